"""Nucleus prompter: backbone + FPN + anchor-point head + auxiliary mask."""
from typing import Dict, Tuple

import torch
from mmdet.models.detectors.single_stage import SingleStageDetector
from mmdet.registry import MODELS
from mmdet.structures import OptSampleList, SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from torch import Tensor


@MODELS.register_module()
class NucleusPrompter(SingleStageDetector):
    """Point prompter of PromptNucSeg (DPA-P2PNet + auxiliary mask head).

    ``bbox_head`` is a :class:`PointAnchorHead` on the neck levels and
    ``aux_mask_head`` an optional :class:`AuxMaskHead` on the backbone
    features (own FPN) or the shared P2. The training loss is the sum of the
    head losses (paper Eq. 6). At inference, when ``test_cfg.mask_filter``
    is True the auxiliary nucleus probability is used to drop points where
    it is not above ``test_cfg.mask_thr`` (mask-aided prompt filtering).

    Predictions (``pred_instances``) hold ``points`` (N, 2) x, y, ``labels``,
    ``scores`` and small ``bboxes`` around the points, in the original image
    frame when ``rescale=True`` (docs/design.md).

    Args:
        backbone (dict): Backbone config.
        neck (dict): Neck config (an FPN whose levels match
            ``bbox_head.feat_strides``).
        bbox_head (dict): :class:`PointAnchorHead` config.
        aux_mask_head (dict, optional): :class:`AuxMaskHead` config.
        train_cfg (dict, optional): Passed to ``bbox_head``.
        test_cfg (dict, optional): Passed to ``bbox_head``; also
            ``mask_filter`` (bool) for mask-aided filtering.
        data_preprocessor (dict, optional): Normally a DetDataPreprocessor
            with ``pad_size_divisor`` a multiple of the anchor stride.
        channels_last (bool): Keep 4-D weights and the input images in
            ``torch.channels_last`` memory format (same results, faster
            ConvNeXt/ResNet convolutions on CPU, and on GPU with AMP).
            Defaults to False.
        init_cfg (dict or list[dict], optional): Initialization config.
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: ConfigType,
                 bbox_head: ConfigType,
                 aux_mask_head: OptConfigType = None,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 channels_last: bool = False,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(
            backbone=backbone,
            neck=neck,
            bbox_head=bbox_head,
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        if aux_mask_head is not None:
            self.aux_mask_head = MODELS.build(aux_mask_head)
        if self.mask_filter and not self.with_aux_mask:
            raise ValueError('NucleusPrompter: test_cfg.mask_filter=True '
                             'needs an aux_mask_head')
        self.channels_last = channels_last
        if channels_last:
            # Later .to(device) and load_state_dict keep the memory format.
            self.to(memory_format=torch.channels_last)
        divisor = getattr(self.data_preprocessor, 'pad_size_divisor', None)
        if divisor is not None and divisor % self.stride:
            raise ValueError(
                f'NucleusPrompter: data_preprocessor.pad_size_divisor '
                f'({divisor}) must be a multiple of the anchor stride '
                f'bbox_head.stride ({self.stride})')

    @property
    def stride(self) -> int:
        """Anchor spacing lambda; inputs are padded to a multiple of it."""
        return self.bbox_head.stride

    @property
    def with_aux_mask(self) -> bool:
        """Whether the auxiliary mask head exists."""
        return getattr(self, 'aux_mask_head', None) is not None

    @property
    def mask_filter(self) -> bool:
        """Whether mask-aided prompt filtering is on (``test_cfg``)."""
        return bool((self.test_cfg or {}).get('mask_filter', False))

    def _extract_feats(self,
                       batch_inputs: Tensor) -> Tuple[Tuple[Tensor], ...]:
        """Backbone features and neck features.

        Args:
            batch_inputs (Tensor): (B, 3, H, W) normalised, padded images.

        Returns:
            tuple: (backbone features, neck features), each a tuple of maps.
        """
        if self.channels_last:
            batch_inputs = batch_inputs.contiguous(
                memory_format=torch.channels_last)
        feats = tuple(self.backbone(batch_inputs))
        return feats, tuple(self.neck(feats))

    def _aux_inputs(self, feats: Tuple[Tensor],
                    x: Tuple[Tensor]) -> Tuple[Tensor]:
        return feats if self.aux_mask_head.use_backbone_feats else x

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor]:
        """Neck features (B, C, H / s_i, W / s_i) for each level i."""
        return self._extract_feats(batch_inputs)[1]

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Point classification/regression losses plus the mask loss.

        Args:
            batch_inputs (Tensor): (B, 3, H, W) normalised, padded images.
            batch_data_samples (list[DetDataSample]): With ``gt_instances``
                (``points``, ``labels``) and, for the auxiliary head,
                ``gt_sem_seg``.

        Returns:
            dict[str, Tensor]: ``loss_cls``, ``loss_point``, ``loss_mask``.
        """
        feats, x = self._extract_feats(batch_inputs)
        losses = self.bbox_head.loss(x, batch_data_samples)
        if self.with_aux_mask:
            losses.update(
                self.aux_mask_head.loss(
                    self._aux_inputs(feats, x), batch_data_samples))
        return losses

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Predict nucleus points.

        Args:
            batch_inputs (Tensor): (B, 3, H, W) normalised, padded images.
            batch_data_samples (list[DetDataSample]): Samples with metainfo
                (``img_shape``, ``batch_input_shape``; with rescale also
                ``scale_factor`` and ``ori_shape``).
            rescale (bool): Return points in the original image frame.

        Returns:
            list[DetDataSample]: Samples with ``pred_instances`` holding
            ``points`` (N, 2), ``labels`` (N,), ``scores`` (N,) and
            ``bboxes`` (N, 4).
        """
        feats, x = self._extract_feats(batch_inputs)
        mask_probs = None
        if self.mask_filter:
            mask_probs = self.aux_mask_head.predict(
                self._aux_inputs(feats, x), batch_data_samples)
        results_list = self.bbox_head.predict(
            x, batch_data_samples, rescale=rescale, mask_probs=mask_probs)
        return self.add_pred_to_datasample(batch_data_samples, results_list)

    def _forward(self,
                 batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None) -> Tuple[Tensor]:
        """Raw outputs: point logits, points and (if any) mask logits.

        Returns:
            tuple[Tensor]: ``cls_scores`` (B, Ha, Wa, C + 1), ``point_preds``
            (B, Ha, Wa, 2) in padded-input pixels and, with the auxiliary
            head, mask logits (B, 1, H / 4, W / 4).
        """
        feats, x = self._extract_feats(batch_inputs)
        outs = self.bbox_head.forward(x)
        if self.with_aux_mask:
            outs = outs + (self.aux_mask_head(self._aux_inputs(feats, x)), )
        return outs

    @torch.no_grad()
    def predict_mask_probs(self, batch_inputs: Tensor,
                           batch_data_samples: SampleList) -> Tensor:
        """Auxiliary nucleus probability map in the padded input frame.

        Args:
            batch_inputs (Tensor): (B, 3, H, W) normalised, padded images.
            batch_data_samples (list[DetDataSample]): Samples with metainfo.

        Returns:
            Tensor: (B, H, W) probabilities.
        """
        if not self.with_aux_mask:
            raise RuntimeError('NucleusPrompter has no aux_mask_head')
        feats, x = self._extract_feats(batch_inputs)
        return self.aux_mask_head.predict(
            self._aux_inputs(feats, x), batch_data_samples)
