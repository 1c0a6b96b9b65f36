"""The segmentor's training criterion (paper Eq. 2): focal + dice + IoU."""
from typing import Dict

import torch
from mmdet.registry import MODELS
from mmdet.utils import ConfigType
from torch import Tensor, nn

__all__ = ['PromptMaskLoss']


@MODELS.register_module()
class PromptMaskLoss(nn.Module):
    """Focal + dice losses of the mask logits and a regression of the
    predicted IoU onto the IoU of the thresholded mask (target detached).

    Args:
        loss_focal (dict): mmdet loss config applied to (M, H*W) logits.
        loss_dice (dict): mmdet loss config applied to (M, H, W) logits.
        loss_iou (dict): mmdet loss config between (M,) IoUs.
    """

    def __init__(self, loss_focal: ConfigType, loss_dice: ConfigType,
                 loss_iou: ConfigType) -> None:
        super().__init__()
        self.loss_focal = MODELS.build(loss_focal)
        self.loss_dice = MODELS.build(loss_dice)
        self.loss_iou = MODELS.build(loss_iou)

    def forward(self,
                mask_logits: Tensor,
                pred_ious: Tensor,
                gt_masks: Tensor,
                mask_threshold: float = 0.0) -> Dict[str, Tensor]:
        """Losses of M predicted masks.

        Args:
            mask_logits (Tensor): (M, H, W) mask logits.
            pred_ious (Tensor): (M,) predicted IoU.
            gt_masks (Tensor): (M, H, W) 0/1 target masks.
            mask_threshold (float): Logit threshold of the predicted mask
                whose IoU with the target is the IoU-head target.

        Returns:
            dict[str, Tensor]: ``loss_focal``, ``loss_dice``, ``loss_iou``.
        """
        gt_masks = gt_masks.float()
        with torch.no_grad():
            binary = mask_logits > mask_threshold
            gt_bool = gt_masks > 0.5
            inter = (binary & gt_bool).flatten(1).sum(1)
            union = (binary | gt_bool).flatten(1).sum(1)
            iou_targets = inter.float() / union.clamp(min=1).float()
        return dict(
            loss_focal=self.loss_focal(
                mask_logits.flatten(1), gt_masks.flatten(1)),
            loss_dice=self.loss_dice(mask_logits, gt_masks),
            loss_iou=self.loss_iou(pred_ious, iou_targets))
