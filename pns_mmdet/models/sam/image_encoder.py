"""SAM ViT image encoder (B / L / H) at a configurable input size."""
from functools import partial
from typing import Any, Dict, Tuple

import torch
import torch.nn as nn
from mmdet.registry import MODELS
from segment_anything.modeling import ImageEncoderViT

from .padded_window_block import PaddedWindowBlock
from .pos_embed import resize_abs_pos_embed, resize_rel_pos

__all__ = ['SAM_VIT_ARCHS', 'SAMImageEncoderViT']

# Every architecture number of SAM's ViTs, as in segment_anything's
# build_sam.py. The official checkpoints were trained at 1024 px.
SAM_VIT_COMMON: Dict[str, Any] = dict(
    patch_size=16,
    mlp_ratio=4.0,
    out_chans=256,
    qkv_bias=True,
    use_rel_pos=True,
    rel_pos_zero_init=True,
    window_size=14)
SAM_VIT_ARCHS: Dict[str, Dict[str, Any]] = {
    'vit_b':
    dict(
        embed_dim=768,
        depth=12,
        num_heads=12,
        global_attn_indexes=(2, 5, 8, 11)),
    'vit_l':
    dict(
        embed_dim=1024,
        depth=24,
        num_heads=16,
        global_attn_indexes=(5, 11, 17, 23)),
    'vit_h':
    dict(
        embed_dim=1280,
        depth=32,
        num_heads=16,
        global_attn_indexes=(7, 15, 23, 31)),
}


@MODELS.register_module()
class SAMImageEncoderViT(ImageEncoderViT):
    """SAM's ViT image encoder, run at ``img_size`` (256 in PromptNucSeg).

    The module is ``segment_anything``'s ``ImageEncoderViT`` itself, so its
    state-dict keys are those of the official checkpoints (under the
    ``image_encoder.`` prefix of a SAM model). When a state dict made for
    another input size is loaded (e.g. the official 1024-px weights), a
    load-time hook resizes the absolute position embedding (bicubic) and
    the relative-position tables of the global-attention blocks (linear) to
    this encoder's token grid, exactly as upstream PromptNucSeg does at every
    forward pass. Any other shape difference fails loading.

    Args:
        arch (str): 'vit_b', 'vit_l' or 'vit_h' (keys of ``SAM_VIT_ARCHS``).
        img_size (int): Side of the square input, pixels. Defaults to 256.
        frozen (bool): Freeze every parameter and keep eval mode (for cheap
            fine-tuning of the decoder only). Defaults to False.
        padded_window_attention (bool): Build the blocks as
            :class:`PaddedWindowBlock` (the same result with about a third
            fewer multiply-adds at 256 px and fused attention, in training
            and inference). False keeps ``segment_anything``'s plain
            ``Block`` (the reference path). Either way the weights drawn at
            build are the same for the same seed. Defaults to True.
        **overrides: Any ``ImageEncoderViT`` argument replacing the arch
            value (``embed_dim``, ``depth``, ``num_heads``,
            ``global_attn_indexes``, ``window_size``, ...), e.g. to build a
            tiny encoder in tests.

    Shapes:
        input (B, 3, img_size, img_size), normalised RGB; output
        (B, out_chans, img_size / patch_size, img_size / patch_size).
    """

    def __init__(self,
                 arch: str = 'vit_b',
                 img_size: int = 256,
                 frozen: bool = False,
                 padded_window_attention: bool = True,
                 **overrides: Any) -> None:
        if arch not in SAM_VIT_ARCHS:
            raise KeyError(f'SAMImageEncoderViT: unknown arch "{arch}", '
                           f'expected one of {sorted(SAM_VIT_ARCHS)}')
        cfg = {**SAM_VIT_COMMON, **SAM_VIT_ARCHS[arch], **overrides}
        cfg['global_attn_indexes'] = tuple(cfg['global_attn_indexes'])
        if img_size % cfg['patch_size'] != 0:
            raise ValueError(f'SAMImageEncoderViT: img_size {img_size} is '
                             f'not a multiple of patch_size '
                             f'{cfg["patch_size"]}')
        super().__init__(
            img_size=img_size,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            act_layer=nn.GELU,
            **cfg)
        self.arch = arch
        self.patch_size = cfg['patch_size']
        self.out_channels = cfg['out_chans']
        self.frozen = frozen
        self.padded_window_attention = padded_window_attention
        if padded_window_attention:
            self._build_padded_blocks(cfg, img_size)
        self.register_load_state_dict_pre_hook(self._resize_pos_hook)
        if frozen:
            self.requires_grad_(False)
            self.train(False)

    @property
    def embedding_size(self) -> Tuple[int, int]:
        """(h, w) of the output embedding grid."""
        grid = self.img_size // self.patch_size
        return grid, grid

    def _build_padded_blocks(self, cfg: Dict[str, Any],
                             img_size: int) -> None:
        """Replace the plain blocks by :class:`PaddedWindowBlock` modules
        holding the same parameter tensors (built on the meta device, so no
        weight is drawn twice and the global RNG advances exactly as for
        plain blocks)."""
        grid = img_size // cfg['patch_size']
        for i, old in enumerate(self.blocks):
            with torch.device('meta'):
                new = PaddedWindowBlock(
                    dim=cfg['embed_dim'],
                    num_heads=cfg['num_heads'],
                    mlp_ratio=cfg['mlp_ratio'],
                    qkv_bias=cfg['qkv_bias'],
                    norm_layer=partial(nn.LayerNorm, eps=1e-6),
                    act_layer=nn.GELU,
                    use_rel_pos=cfg['use_rel_pos'],
                    rel_pos_zero_init=cfg['rel_pos_zero_init'],
                    window_size=(0 if i in cfg['global_attn_indexes'] else
                                 cfg['window_size']),
                    input_size=(grid, grid))
            new.load_state_dict(old.state_dict(), assign=True)
            self.blocks[i] = new

    def train(self, mode: bool = True) -> 'SAMImageEncoderViT':
        """Set train mode, except that a frozen encoder stays in eval."""
        return super().train(mode and not self.frozen)

    def _resize_pos_hook(self, module: nn.Module, state_dict: dict,
                         prefix: str, *args: Any) -> None:
        """Resize position tensors of ``state_dict`` in place to this grid.

        Only the tensors whose sizes follow from the token grid are touched:
        ``pos_embed`` and the ``rel_pos_h/w`` tables of global-attention
        blocks, when their length is 2 * (source grid) - 1. Anything else
        keeps its shape so that ``load_state_dict`` reports the mismatch.
        """
        grid = self.embedding_size[0]
        src_grid = None
        key = prefix + 'pos_embed'
        if self.pos_embed is not None and key in state_dict:
            src = state_dict[key]
            if (src.dim() == 4 and src.size(1) == src.size(2)
                    and src.size(-1) == self.pos_embed.size(-1)):
                src_grid = src.size(1)
                state_dict[key] = resize_abs_pos_embed(src, grid)
        for i, block in enumerate(self.blocks):
            attn = block.attn
            if not attn.use_rel_pos or block.window_size != 0:
                continue  # window blocks keep their window-sized tables
            for axis in ('h', 'w'):
                key = f'{prefix}blocks.{i}.attn.rel_pos_{axis}'
                if key not in state_dict:
                    continue
                src = state_dict[key]
                target = getattr(attn, f'rel_pos_{axis}')
                from_grid = (
                    src_grid is None and src.size(0) % 2 == 1
                    or src_grid is not None
                    and src.size(0) == 2 * src_grid - 1)
                if (src.dim() == 2 and src.size(1) == target.size(1)
                        and from_grid):
                    state_dict[key] = resize_rel_pos(src, target.size(0))
