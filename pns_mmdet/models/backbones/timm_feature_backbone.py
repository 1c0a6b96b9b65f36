"""Multi-level feature backbone over any timm model (offline weights only)."""
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import timm
from mmdet.registry import MODELS
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor


@MODELS.register_module()
class TimmFeatureBackbone(BaseModule):
    """``timm.create_model(..., features_only=True)`` as an mmdet backbone.

    Pretrained weights are read only from a local file (``checkpoint``,
    through timm's ``pretrained_cfg_overlay=dict(file=...)`` so timm's own
    checkpoint filters apply, e.g. Facebook's original ConvNeXt weights);
    nothing is downloaded. Without a checkpoint the model keeps timm's random
    initialisation and a message says so.

    For ConvNeXt-S (the paper's prompter backbone) the outputs are the four
    stage maps, strides 4/8/16/32, channels 96/192/384/768, without norm, as
    in the upstream patched timm.

    Args:
        model_name (str): timm model name, e.g. ``'convnext_small'``.
        out_indices (Sequence[int]): Feature levels to return.
            Defaults to (0, 1, 2, 3).
        checkpoint (str, optional): Local path of timm/ImageNet weights
            (``.pth``, ``.bin`` or ``.safetensors``). Defaults to None.
        init_cfg (dict, optional): Must be None: weights come from
            ``checkpoint`` at construction, so mmengine's ``init_weights``
            leaves the timm model untouched.
        **kwargs: Extra arguments of ``timm.create_model`` (e.g.
            ``drop_path_rate``).
    """

    def __init__(self,
                 model_name: str,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 checkpoint: Optional[str] = None,
                 init_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        if init_cfg is not None:
            raise ValueError(
                'TimmFeatureBackbone loads weights from `checkpoint`; '
                f'init_cfg must be None, got {init_cfg}')
        super().__init__(init_cfg=None)
        for key in ('pretrained', 'features_only', 'pretrained_cfg_overlay'):
            if key in kwargs:
                raise ValueError(f'TimmFeatureBackbone sets `{key}` itself; '
                                 'give a local `checkpoint` path instead')
        if checkpoint is not None:
            if not osp.isfile(checkpoint):
                raise FileNotFoundError(
                    f'TimmFeatureBackbone: checkpoint {checkpoint!r} for '
                    f'{model_name} does not exist (weights are never '
                    'downloaded; set `checkpoint=None` for random init)')
            kwargs['pretrained_cfg_overlay'] = dict(file=checkpoint)
        self.model = timm.create_model(
            model_name,
            pretrained=checkpoint is not None,
            features_only=True,
            out_indices=tuple(out_indices),
            **kwargs)
        self.checkpoint = checkpoint
        if checkpoint is None:
            print_log(
                f'TimmFeatureBackbone: no checkpoint given, {model_name} is '
                'randomly initialised (set model.backbone.checkpoint to a '
                'local ImageNet weight file to start from pretrained weights)',
                logger='current')
        else:
            print_log(
                f'TimmFeatureBackbone: loaded {model_name} weights from '
                f'{checkpoint}',
                logger='current')
        # timm initialised (or loaded) the weights; mmengine must not redo it.
        self._is_init = True

    @property
    def out_channels(self) -> List[int]:
        """Channels of each returned level."""
        return list(self.model.feature_info.channels())

    @property
    def strides(self) -> List[int]:
        """Stride of each returned level in input pixels."""
        return list(self.model.feature_info.reduction())

    def init_weights(self) -> None:
        """No-op: weights come from timm at construction."""

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Multi-level features.

        Args:
            x (Tensor): (B, 3, H, W) normalised RGB images.

        Returns:
            tuple[Tensor]: One (B, C_i, H / s_i, W / s_i) map per level.
        """
        return tuple(self.model(x))
