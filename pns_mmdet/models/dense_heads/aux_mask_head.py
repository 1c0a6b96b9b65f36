"""Auxiliary nucleus-foreground head of the prompter (paper Sec. 3.3)."""
from typing import Dict, Sequence, Tuple, Union

import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, OptMultiConfig
from mmengine.model import BaseModule
from torch import Tensor


@MODELS.register_module()
class AuxMaskHead(BaseModule):
    """Conv3x3-BN-ReLU-Conv1x1 nucleus-probability head on a stride-4 map.

    The input is either the shared neck level ``in_index`` (P2) when
    ``in_channels`` is an int, or, as upstream, the backbone features fed to
    the head's own one-level FPN (1x1 laterals, nearest top-down sum, 3x3
    output conv on the finest level only) when ``in_channels`` is a list.
    Logits are upsampled bilinearly (``align_corners=False``) to the padded
    input and supervised by the binary foreground ``gt_sem_seg`` with a
    focal loss (gamma 2, no alpha, mean over pixels; pixels equal to
    ``ignore_index``, e.g. batch padding, are skipped). Unlike upstream the
    1x1 convolution has no padding, so the map is not shifted.

    Args:
        in_channels (int | Sequence[int]): Channels of the shared neck level
            (int), or of every backbone level for the own FPN (list).
            Defaults to 256.
        feat_channels (int): Channels of the 3x3 conv. Defaults to 256.
        fpn_channels (int): Output channels of the own FPN. Defaults to 256.
        in_index (int): Neck level used when ``in_channels`` is an int.
            Defaults to 0.
        feat_stride (int): Stride of the map the head runs on (P2: 4).
        norm_cfg (dict): Norm layer of the 3x3 conv. Defaults to BN.
        loss_mask (dict): Pixel loss on logits. The default mmdet FocalLoss
            with ``alpha=0.5, loss_weight=2.0`` equals the alpha-free focal
            loss of weight 1 used upstream (alpha weights both classes 0.5).
        ignore_index (int): Target value ignored by the loss.
            Defaults to 255 (the DetDataPreprocessor ``seg_pad_value``).
        init_cfg (dict or list[dict], optional): Initialization config.
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]] = 256,
                 feat_channels: int = 256,
                 fpn_channels: int = 256,
                 in_index: int = 0,
                 feat_stride: int = 4,
                 norm_cfg: ConfigType = dict(type='BN'),
                 loss_mask: ConfigType = dict(
                     type='FocalLoss',
                     use_sigmoid=True,
                     gamma=2.0,
                     alpha=0.5,
                     loss_weight=2.0),
                 ignore_index: int = 255,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.use_backbone_feats = isinstance(in_channels, (list, tuple))
        self.in_index = in_index
        self.feat_stride = feat_stride
        self.ignore_index = ignore_index
        if self.use_backbone_feats:
            self.lateral_convs = nn.ModuleList([
                ConvModule(c, fpn_channels, 1, act_cfg=None)
                for c in in_channels
            ])
            self.fpn_conv = ConvModule(
                fpn_channels, fpn_channels, 3, padding=1, act_cfg=None)
            head_in = fpn_channels
        else:
            head_in = int(in_channels)
        self.in_channels = in_channels
        self.conv = ConvModule(
            head_in,
            feat_channels,
            3,
            padding=1,
            norm_cfg=norm_cfg,
            act_cfg=dict(type='ReLU'))
        self.conv_logits = nn.Conv2d(feat_channels, 1, kernel_size=1)
        self.loss_mask = MODELS.build(loss_mask)

    def forward(self, x: Tuple[Tensor]) -> Tensor:
        """Foreground logits at the head's stride.

        Args:
            x (tuple[Tensor]): Backbone features (own FPN) or neck features
                (shared); the used map has stride ``feat_stride``.

        Returns:
            Tensor: (B, 1, H / feat_stride, W / feat_stride) logits.
        """
        if self.use_backbone_feats:
            if len(x) < len(self.lateral_convs):
                raise ValueError(
                    f'AuxMaskHead own FPN expects {len(self.lateral_convs)} '
                    f'backbone levels, got {len(x)}')
            laterals = [conv(f) for conv, f in zip(self.lateral_convs, x)]
            for i in range(len(laterals) - 1, 0, -1):
                laterals[i - 1] = laterals[i - 1] + F.interpolate(
                    laterals[i], size=laterals[i - 1].shape[-2:],
                    mode='nearest')
            feat = self.fpn_conv(laterals[0])
        else:
            feat = x[self.in_index]
        return self.conv_logits(self.conv(feat))

    def _input_logits(self, x: Tuple[Tensor],
                      batch_data_samples: SampleList) -> Tensor:
        """Logits upsampled to the padded input, (B, 1, H, W)."""
        logits = self.forward(x)
        meta = batch_data_samples[0].metainfo
        if 'batch_input_shape' in meta:
            size = tuple(meta['batch_input_shape'])
        else:
            size = (logits.shape[-2] * self.feat_stride,
                    logits.shape[-1] * self.feat_stride)
        return F.interpolate(
            logits, size=size, mode='bilinear', align_corners=False)

    def loss(self, x: Tuple[Tensor],
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Focal loss against the binary nucleus foreground.

        Args:
            x (tuple[Tensor]): Features, see :meth:`forward`.
            batch_data_samples (list[DetDataSample]): Each with
                ``gt_sem_seg.sem_seg`` (1, h, w), 1 = nucleus, 0 =
                background, ``ignore_index`` = ignored, anchored top-left in
                the padded input.

        Returns:
            dict[str, Tensor]: ``loss_mask``.
        """
        logits = self._input_logits(x, batch_data_samples)
        height, width = logits.shape[-2:]
        targets = logits.new_full((len(batch_data_samples), height, width),
                                  self.ignore_index)
        for i, sample in enumerate(batch_data_samples):
            if 'gt_sem_seg' not in sample:
                raise KeyError(
                    'AuxMaskHead needs data_samples.gt_sem_seg (binary '
                    'nucleus foreground, 1 = nucleus) for image '
                    f'{sample.metainfo.get("img_path", "?")}; '
                    'PackNucleusInputs produces it from gt_seg_map')
            seg = sample.gt_sem_seg.sem_seg
            h, w = min(seg.shape[-2], height), min(seg.shape[-1], width)
            targets[i, :h, :w] = seg.reshape(seg.shape[-2:])[:h, :w].to(
                targets)
        valid = targets != self.ignore_index
        fg = (targets > 0) & valid
        num_valid = valid.sum().clamp(min=1).float()
        loss = self.loss_mask(
            logits.reshape(-1, 1),
            fg.reshape(-1, 1).to(logits),
            weight=valid.reshape(-1, 1).to(logits),
            avg_factor=num_valid)
        return dict(loss_mask=loss)

    def predict(self, x: Tuple[Tensor],
                batch_data_samples: SampleList) -> Tensor:
        """Nucleus probability in the padded input frame.

        Args:
            x (tuple[Tensor]): Features, see :meth:`forward`.
            batch_data_samples (list[DetDataSample]): Samples whose metainfo
                gives ``batch_input_shape``.

        Returns:
            Tensor: (B, H, W) probabilities in [0, 1].
        """
        return self._input_logits(x, batch_data_samples).sigmoid()[:, 0]
