"""From per-anchor outputs to nucleus points (the prompter's test step)."""
from typing import Optional

from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor

from ..utils.point_ops import (clip_points, point_nms, points_to_boxes,
                               rescale_points)

__all__ = ['anchor_outputs_to_points']


def anchor_outputs_to_points(cls_score: Tensor, point_pred: Tensor,
                             img_meta: dict, cfg: ConfigDict,
                             num_classes: int, rescale: bool = False,
                             mask_prob: Optional[Tensor] = None
                             ) -> InstanceData:
    """Nucleus points of one image from its anchors.

    A point is a nucleus when its softmax argmax is not background (the
    last class); its score is that probability. Points are clipped to
    ``img_shape``, optionally thresholded (``score_thr``) and mask-filtered
    (``mask_thr``), deduplicated by class-agnostic greedy point NMS
    (``nms_radius``) and cut to ``max_per_img``.

    Args:
        cls_score (Tensor): (M, C + 1) logits.
        point_pred (Tensor): (M, 2) x, y in input pixels.
        img_meta (dict): ``img_shape``; with ``rescale`` also ``ori_shape``
            and ``scale_factor`` (w, h; 1 when absent: no Resize).
        cfg (ConfigDict): The head's test config.
        num_classes (int): C.
        rescale (bool): Map to the original image frame.
        mask_prob (Tensor, optional): (H, W) foreground probability in the
            padded input frame (mask-aided filtering).

    Returns:
        InstanceData: ``points`` (K, 2), ``scores`` (K,) descending,
        ``labels`` (K,) and ``bboxes`` (K, 4) small boxes on the points.
    """
    probs = cls_score.softmax(dim=-1)
    scores, labels = probs.max(dim=-1)
    keep = labels < num_classes
    score_thr = cfg.get('score_thr', 0.0)
    if score_thr > 0:
        keep &= scores > score_thr
    points = clip_points(point_pred[keep], img_meta['img_shape'])
    scores, labels = scores[keep], labels[keep]

    if mask_prob is not None:
        # The point lies in pixel (round(y), round(x)) (pixel centres at
        # integer coordinates).
        px = points.round().long()
        fg = mask_prob[px[:, 1], px[:, 0]] > cfg.get('mask_thr', 0.5)
        points, scores, labels = points[fg], scores[fg], labels[fg]

    order = point_nms(points, scores, cfg.get('nms_radius', 12.0))
    max_per_img = cfg.get('max_per_img', 0)
    if max_per_img and max_per_img > 0:
        order = order[:max_per_img]
    points, scores, labels = points[order], scores[order], labels[order]

    if rescale:
        # No scale_factor in the metainfo means no Resize in the
        # pipeline: the input frame is the original frame.
        scale_factor = img_meta.get('scale_factor', (1.0, 1.0))
        points = rescale_points(points, scale_factor)
        points = clip_points(
            points, img_meta.get('ori_shape', img_meta['img_shape']))

    results = InstanceData()
    results.points = points
    results.scores = scores
    results.labels = labels
    results.bboxes = points_to_boxes(points, cfg.get('box_size', 8.0))
    return results
