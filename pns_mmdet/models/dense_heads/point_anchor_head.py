"""Anchor-point head of the nucleus prompter (DPA-P2PNet style)."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.models.utils import multi_apply
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures import SampleList
from mmdet.utils import (ConfigType, InstanceList, OptConfigType,
                         OptInstanceList, OptMultiConfig, reduce_mean)
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor

from ..utils.point_ops import anchor_grid, sample_at_points
from .point_postprocess import anchor_outputs_to_points


def _mlp(in_dim: int, hidden_dim: int, out_dim: int,
         dropout: float) -> nn.Sequential:
    """Linear -> ReLU -> Dropout -> Linear (the upstream two-layer MLP)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True),
        nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim))


@MODELS.register_module()
class PointAnchorHead(BaseDenseHead):
    """Refine and classify a regular grid of anchor points.

    Anchors sit at ``stride/2 + k*stride`` (x and y) on the input padded to a
    multiple of ``stride`` (lambda in the paper). Optionally (``with_deform``)
    each anchor first moves by an offset predicted from the feature of level
    ``deform_level`` bilinearly sampled at the anchor. The pyramid levels
    ``feat_levels`` are then sampled at the moved points, concatenated and
    mixed by a 3x3 convolution over the anchor grid; two MLPs predict a
    point offset (pixels) and C + 1 logits (background last).

    Training follows DETRHead: one-to-one Hungarian assignment of anchors to
    nucleus points (``train_cfg.assigner``), a class-weighted cross entropy
    over all anchors (weight ``bg_cls_weight`` = beta on background, weighted
    mean) and an MSE on matched points summed over points and coordinates and
    divided by the number of ground-truth points (paper Eq. 3 and 4).

    Sampling uses ``F.grid_sample(align_corners=False)`` with pixel-centre
    normalisation (:func:`points_to_grid`) and border padding, fixing
    upstream's half-cell misalignment.

    Args:
        num_classes (int): Number of nucleus classes C (without background).
        in_channels (int): Channels of every neck level. Defaults to 256.
        feat_channels (int): Output channels of the 3x3 fusion conv.
            Defaults to 256.
        hidden_dim (int): Hidden width of the MLPs. Defaults to 256.
        dropout (float): Dropout of the MLPs. Defaults to 0.1.
        stride (int): Anchor spacing lambda in input pixels; the input must
            be padded to a multiple of it. Defaults to 8.
        feat_strides (Sequence[int]): Stride of each neck level.
            Defaults to (4, 8, 16, 32).
        feat_levels (Sequence[int]): Indices of the neck levels sampled for
            the final features. Defaults to (0, 1, 2).
        with_deform (bool): Whether to move anchors by a predicted offset
            before multi-level sampling. Defaults to True.
        deform_level (int): Neck level used for the offset. Defaults to 0.
        bg_cls_weight (float): Background class weight (beta).
            Defaults to 0.4.
        loss_cls (dict): Softmax classification loss; its ``class_weight``
            is set to ``[1] * C + [bg_cls_weight]``.
        loss_reg (dict): Point regression loss (weight gamma).
        train_cfg (dict, optional): ``assigner``; defaults to
            :attr:`DEFAULT_TRAIN_CFG` (upstream costs).
        test_cfg (dict, optional): Merged over :attr:`DEFAULT_TEST_CFG`:
            ``score_thr`` (0: keep every non-
            background point), ``nms_radius`` (pixels, <= 0 disables),
            ``mask_thr`` (foreground probability for mask-aided filtering),
            ``max_per_img`` (0: no limit), ``box_size`` (side of the pseudo
            boxes drawn by the visualiser).
        init_cfg (dict or list[dict], optional): Initialization config.
    """

    # Upstream PromptNucSeg: cost 1.0 * (-softmax prob) + 0.1 * L2 (pixels).
    DEFAULT_TRAIN_CFG = dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='ClassificationCost', weight=1.0),
                dict(type='PointL2Cost', weight=0.1)
            ]))
    DEFAULT_TEST_CFG = dict(
        score_thr=0.0, nms_radius=12.0, mask_thr=0.5, max_per_img=0,
        box_size=8.0)

    def __init__(self,
                 num_classes: int,
                 in_channels: int = 256,
                 feat_channels: int = 256,
                 hidden_dim: int = 256,
                 dropout: float = 0.1,
                 stride: int = 8,
                 feat_strides: Sequence[int] = (4, 8, 16, 32),
                 feat_levels: Sequence[int] = (0, 1, 2),
                 with_deform: bool = True,
                 deform_level: int = 0,
                 bg_cls_weight: float = 0.4,
                 loss_cls: ConfigType = dict(
                     type='CrossEntropyLoss',
                     use_sigmoid=False,
                     loss_weight=1.0),
                 loss_reg: ConfigType = dict(type='MSELoss', loss_weight=5e-3),
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_classes < 1:
            raise ValueError(f'num_classes must be >= 1, got {num_classes}')
        if stride < 1:
            raise ValueError(f'stride (lambda) must be >= 1, got {stride}')
        n_levels = len(feat_strides)
        for name, idx in [('feat_levels', i) for i in feat_levels
                          ] + [('deform_level', deform_level)]:
            if not 0 <= idx < n_levels:
                raise ValueError(f'{name} index {idx} is out of range for '
                                 f'feat_strides {tuple(feat_strides)}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.hidden_dim = hidden_dim
        self.dropout = dropout
        self.stride = int(stride)
        self.feat_strides = tuple(feat_strides)
        self.feat_levels = tuple(feat_levels)
        self.with_deform = with_deform
        self.deform_level = deform_level
        self.bg_cls_weight = float(bg_cls_weight)
        # Detectors pass train_cfg/test_cfg=None when their config has none:
        # fall back to the upstream settings.
        self.train_cfg = ConfigDict(self.DEFAULT_TRAIN_CFG,
                                    **(train_cfg or {}))
        self.test_cfg = ConfigDict(self.DEFAULT_TEST_CFG, **(test_cfg or {}))

        loss_cls = ConfigDict(loss_cls)
        if loss_cls.get('use_sigmoid', False):
            raise ValueError('PointAnchorHead uses a softmax over C + 1 '
                             'classes: loss_cls.use_sigmoid must be False')
        loss_cls['class_weight'] = [1.0] * num_classes + [self.bg_cls_weight]
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_reg = MODELS.build(loss_reg)
        self.assigner = TASK_UTILS.build(self.train_cfg['assigner'])
        self._init_layers()

    def _init_layers(self) -> None:
        """Deform MLP, fusion conv, regression and classification MLPs."""
        if self.with_deform:
            self.deform_mlp = _mlp(self.in_channels, self.hidden_dim, 2,
                                   self.dropout)
        self.fuse_conv = nn.Conv2d(
            self.in_channels * len(self.feat_levels),
            self.feat_channels,
            kernel_size=3,
            padding=1)
        self.reg_mlp = _mlp(self.feat_channels, self.hidden_dim, 2,
                            self.dropout)
        self.cls_mlp = _mlp(self.feat_channels, self.hidden_dim,
                            self.num_classes + 1, self.dropout)

    # ------------------------------------------------------------ geometry
    def anchor_points(self, grid_hw: Tuple[int, int],
                      device: torch.device = torch.device('cpu'),
                      dtype: torch.dtype = torch.float32) -> Tensor:
        """(Ha, Wa, 2) anchors of this head's stride, see
        :func:`~pns_mmdet.models.utils.anchor_grid`."""
        return anchor_grid(grid_hw, self.stride, device, dtype)

    def input_size(self, x: Tuple[Tensor]) -> Tuple[int, int]:
        """Padded input (H, W) implied by the finest neck level.

        Args:
            x (tuple[Tensor]): Neck features; ``x[0]`` is (B, C, h, w) with
                stride ``feat_strides[0]``.

        Returns:
            tuple[int, int]: (H, W) of the padded input.
        """
        s0 = self.feat_strides[0]
        h, w = x[0].shape[-2:]
        in_h, in_w = h * s0, w * s0
        if in_h % self.stride or in_w % self.stride:
            raise ValueError(
                f'PointAnchorHead: the padded input ({in_h}x{in_w}, from the '
                f'stride-{s0} feature {h}x{w}) is not a multiple of the '
                f'anchor stride {self.stride}; set the data preprocessor\'s '
                f'pad_size_divisor to a multiple of {self.stride}')
        return in_h, in_w

    @staticmethod
    def sample_features(feat: Tensor, stride: float,
                        points: Tensor) -> Tensor:
        """(B, C, Ha, Wa) features of ``feat`` at (B, Ha, Wa, 2) points,
        see :func:`~pns_mmdet.models.utils.sample_at_points`."""
        return sample_at_points(feat, stride, points)

    def forward(self, x: Tuple[Tensor]) -> Tuple[Tensor, Tensor]:
        """Predict logits and refined points for every anchor.

        Args:
            x (tuple[Tensor]): Neck features, level i of shape
                (B, in_channels, H / feat_strides[i], W / feat_strides[i]).

        Returns:
            tuple[Tensor, Tensor]:
                - cls_scores: (B, Ha, Wa, C + 1) logits, background last.
                - point_preds: (B, Ha, Wa, 2) x, y in padded-input pixels.
        """
        if len(x) != len(self.feat_strides):
            raise ValueError(
                f'PointAnchorHead got {len(x)} feature levels but '
                f'feat_strides has {len(self.feat_strides)} entries')
        in_h, in_w = self.input_size(x)
        batch = x[0].shape[0]
        anchors = self.anchor_points(
            (in_h // self.stride, in_w // self.stride), x[0].device,
            x[0].dtype)
        points = anchors.unsqueeze(0).expand(batch, -1, -1, -1)
        if self.with_deform:
            lvl = self.deform_level
            feat = self.sample_features(x[lvl], self.feat_strides[lvl],
                                        points)
            points = points + self.deform_mlp(feat.permute(0, 2, 3, 1))
        sampled = [
            self.sample_features(x[lvl], self.feat_strides[lvl], points)
            for lvl in self.feat_levels
        ]
        fused = self.fuse_conv(torch.cat(sampled, dim=1)).permute(0, 2, 3, 1)
        point_preds = points + self.reg_mlp(fused)
        cls_scores = self.cls_mlp(fused)
        return cls_scores, point_preds

    def _check_batch_shape(self, cls_scores: Tensor,
                           batch_img_metas: List[dict]) -> None:
        """Raise when the anchor grid does not tile ``batch_input_shape``."""
        ha, wa = cls_scores.shape[1:3]
        for meta in batch_img_metas:
            shape = meta.get('batch_input_shape')
            if shape is not None and tuple(shape) != (ha * self.stride,
                                                      wa * self.stride):
                raise ValueError(
                    f'PointAnchorHead: batch_input_shape {tuple(shape)} does '
                    f'not match the {ha}x{wa} anchor grid of stride '
                    f'{self.stride}; pad inputs to a multiple of '
                    f'{self.stride} (data_preprocessor.pad_size_divisor)')

    # ---------------------------------------------------------------- loss
    def loss_by_feat(
            self,
            cls_scores: Tensor,
            point_preds: Tensor,
            batch_gt_instances: InstanceList,
            batch_img_metas: List[dict],
            batch_gt_instances_ignore: OptInstanceList = None
    ) -> Dict[str, Tensor]:
        """Hungarian targets, then classification and regression losses.

        Args:
            cls_scores (Tensor): (B, Ha, Wa, C + 1) logits.
            point_preds (Tensor): (B, Ha, Wa, 2) x, y in input pixels.
            batch_gt_instances (list[InstanceData]): Per image, ``points``
                (N, 2) x, y in input pixels and ``labels`` (N,) in 0..C-1.
            batch_img_metas (list[dict]): Meta information of each image.
            batch_gt_instances_ignore (list[InstanceData], optional):
                Not supported; must be None or empty.

        Returns:
            dict[str, Tensor]: ``loss_cls`` and ``loss_point``.
        """
        if batch_gt_instances_ignore is not None and any(
                ign is not None and len(ign) > 0
                for ign in batch_gt_instances_ignore):
            raise NotImplementedError(
                'PointAnchorHead does not support ignored instances')
        self._check_batch_shape(cls_scores, batch_img_metas)
        num_imgs = cls_scores.shape[0]
        cls_flat = cls_scores.reshape(num_imgs, -1, self.num_classes + 1)
        pts_flat = point_preds.reshape(num_imgs, -1, 2)

        (labels_list, point_targets_list, pos_list) = multi_apply(
            self._get_targets_single, list(cls_flat.detach()),
            list(pts_flat.detach()), batch_gt_instances, batch_img_metas)
        labels = torch.cat(labels_list)
        point_targets = torch.cat(point_targets_list)
        pos = torch.cat(pos_list)

        cls_all = cls_flat.reshape(-1, self.num_classes + 1)
        # Weighted mean as F.cross_entropy(weight=...): divide by the sum of
        # the class weights of the targets.
        class_weight = cls_all.new_tensor(self.loss_cls.class_weight)
        cls_avg_factor = reduce_mean(class_weight[labels].sum()).clamp(min=1)
        loss_cls = self.loss_cls(cls_all, labels, avg_factor=cls_avg_factor)

        num_gts = sum(len(gt) for gt in batch_gt_instances)
        num_gts = reduce_mean(cls_all.new_tensor(float(num_gts))).clamp(min=1)
        pts_all = pts_flat.reshape(-1, 2)
        loss_point = self.loss_reg(
            pts_all[pos], point_targets[pos], avg_factor=num_gts)
        return dict(loss_cls=loss_cls, loss_point=loss_point)

    def _get_targets_single(self, cls_score: Tensor, point_pred: Tensor,
                            gt_instances: InstanceData,
                            img_meta: dict) -> Tuple[Tensor, Tensor, Tensor]:
        """Assign the anchors of one image.

        Args:
            cls_score (Tensor): (M, C + 1) logits (detached).
            point_pred (Tensor): (M, 2) x, y (detached).
            gt_instances (InstanceData): ``points`` (N, 2), ``labels`` (N,).
            img_meta (dict): Meta information of the image.

        Returns:
            tuple[Tensor, Tensor, Tensor]: labels (M,) long with C for
            background, point targets (M, 2), positive mask (M,) bool.
        """
        for key in ('points', 'labels'):
            if key not in gt_instances:
                raise KeyError(
                    f'PointAnchorHead needs gt_instances.{key} (image '
                    f'{img_meta.get("img_path", "?")}); add '
                    'NucleusPointsFromMasks and PackNucleusInputs to the '
                    'training pipeline')
        num_anchors = cls_score.shape[0]
        gt_points = gt_instances.points.to(point_pred)
        gt_labels = gt_instances.labels.to(cls_score.device).long()
        pred_instances = InstanceData(scores=cls_score, points=point_pred)
        assign_gt = InstanceData(points=gt_points, labels=gt_labels)
        assign_result = self.assigner.assign(
            pred_instances=pred_instances,
            gt_instances=assign_gt,
            img_meta=img_meta)
        gt_inds = assign_result.gt_inds
        pos = gt_inds > 0
        labels = gt_labels.new_full((num_anchors, ), self.num_classes)
        point_targets = point_pred.new_zeros((num_anchors, 2))
        if pos.any():
            matched = gt_inds[pos] - 1
            labels[pos] = gt_labels[matched]
            point_targets[pos] = gt_points[matched]
        return labels, point_targets, pos

    # ----------------------------------------------------------- predict
    def predict(self,
                x: Tuple[Tensor],
                batch_data_samples: SampleList,
                rescale: bool = False,
                mask_probs: Optional[Tensor] = None) -> InstanceList:
        """Forward and post-process.

        Args:
            x (tuple[Tensor]): Neck features.
            batch_data_samples (list[DetDataSample]): Samples with metainfo.
            rescale (bool): Map points to the original image frame.
            mask_probs (Tensor, optional): (B, H, W) nucleus probability in
                the padded input frame; when given, mask-aided filtering
                keeps only points where it exceeds ``test_cfg.mask_thr``.

        Returns:
            list[InstanceData]: See :meth:`predict_by_feat`.
        """
        batch_img_metas = [s.metainfo for s in batch_data_samples]
        outs = self(x)
        return self.predict_by_feat(
            *outs,
            batch_img_metas=batch_img_metas,
            rescale=rescale,
            mask_probs=mask_probs)

    def predict_by_feat(self,
                        cls_scores: Tensor,
                        point_preds: Tensor,
                        batch_img_metas: List[dict],
                        cfg: OptConfigType = None,
                        rescale: bool = False,
                        mask_probs: Optional[Tensor] = None) -> InstanceList:
        """Turn anchor outputs into nucleus points.

        A point is a nucleus when its softmax argmax is not background; its
        score is that probability. Points are clipped to ``img_shape``,
        optionally thresholded and mask-filtered, then deduplicated by
        class-agnostic greedy point NMS (``nms_radius``).

        Args:
            cls_scores (Tensor): (B, Ha, Wa, C + 1) logits.
            point_preds (Tensor): (B, Ha, Wa, 2) x, y in input pixels.
            batch_img_metas (list[dict]): Need ``img_shape``; with rescale
                also ``ori_shape`` and ``scale_factor`` (w, h; taken as 1
                when absent, i.e. no Resize in the pipeline).
            cfg (dict, optional): Overrides ``self.test_cfg``.
            rescale (bool): Map to the original image frame.
            mask_probs (Tensor, optional): (B, H, W) foreground probability
                in the padded input frame, for mask-aided filtering.

        Returns:
            list[InstanceData]: Per image ``points`` (K, 2) x, y, ``labels``
            (K,), ``scores`` (K,) in descending order and ``bboxes`` (K, 4)
            small boxes centred on the points.
        """
        cfg = self.test_cfg if cfg is None else cfg
        num_imgs = cls_scores.shape[0]
        cls_flat = cls_scores.reshape(num_imgs, -1, self.num_classes + 1)
        pts_flat = point_preds.reshape(num_imgs, -1, 2)
        if mask_probs is not None and mask_probs.shape[0] != num_imgs:
            raise ValueError(f'mask_probs has {mask_probs.shape[0]} maps for '
                             f'{num_imgs} images')
        results = []
        for i in range(num_imgs):
            results.append(
                self._predict_by_feat_single(
                    cls_flat[i], pts_flat[i], batch_img_metas[i], cfg,
                    rescale,
                    None if mask_probs is None else mask_probs[i]))
        return results

    def _predict_by_feat_single(self, cls_score: Tensor, point_pred: Tensor,
                                img_meta: dict, cfg: ConfigDict,
                                rescale: bool,
                                mask_prob: Optional[Tensor]) -> InstanceData:
        """Post-process one image (:func:`anchor_outputs_to_points`)."""
        return anchor_outputs_to_points(cls_score, point_pred, img_meta, cfg,
                                        self.num_classes, rescale, mask_prob)
