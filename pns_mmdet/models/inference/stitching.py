"""From per-tile mask candidates to instances and an instance map."""
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmcv.ops import nms
from mmengine.structures import InstanceData
from torch import Tensor

from .mask_patches import paint_instances, sam_to_mmdet_boxes
from .tiled_decoder import MaskCandidates

__all__ = ['stitch_instances', 'rescale_instances', 'class_map']


def stitch_instances(cands: MaskCandidates,
                     points: Tensor,
                     labels: Tensor,
                     img_hw: Sequence[int],
                     nms_iou_thr: Optional[float] = 0.5,
                     with_masks: bool = True,
                     offset: Tuple[int, int] = (0, 0)
                     ) -> Tuple[InstanceData, Tensor]:
    """One mask per prompt, duplicates removed, painted in score order.

    Upstream PromptNucSeg's two NMS aspects: the best-scored (predicted
    IoU) mask of each prompt (ties: the first candidate, as upstream's
    argmax), then a class-agnostic box NMS with the predicted IoU as score
    (skipped when ``nms_iou_thr`` is None). Masks are painted in ascending
    score order, so higher scores win overlaps, and instances that
    higher-scored ones hide entirely are dropped: instance ``i`` is id
    ``i + 1`` of the map.

    Args:
        cands (MaskCandidates): From :class:`~.tiled_decoder.TiledDecoder`,
            boxes in the frame where the image starts at ``offset``.
        points (Tensor): (N, 2) the prompts the candidates refer to.
        labels (Tensor): (N,) long class of each prompt.
        img_hw (Sequence[int]): (h, w) of the image (the region).
        nms_iou_thr (float, optional): Box NMS IoU threshold.
        with_masks (bool): Also return ``masks`` (M, h, w) bool.
        offset (tuple[int, int]): (x0, y0) of the image in the frame of
            the boxes and points; the map and masks are image-local.

    Returns:
        tuple[InstanceData, Tensor]: instances (``labels``, ``scores``
        float32, ``bboxes`` (M, 4) float xyxy exclusive maxima and
        ``points``, in the frame of ``points``; ``masks`` when asked), in
        ascending score order, and the (h, w) int32 instance map.
    """
    h, w = int(img_hw[0]), int(img_hw[1])
    device = points.device
    if len(cands):
        pid = cands.prompt_ids.numpy()
        order = np.lexsort((-cands.scores.numpy(), pid))
        first = np.ones(len(order), dtype=bool)
        first[1:] = pid[order][1:] != pid[order][:-1]
        cands = cands.select(torch.from_numpy(order[first]))
        if nms_iou_thr is None:
            keep = torch.sort(cands.scores, stable=True).indices
        else:
            # On inclusive-max boxes, as upstream (torchvision layout).
            _, keep = nms(cands.boxes.float(), cands.scores.float(),
                          float(nms_iou_thr))
            keep = keep.flip(0)  # ascending score: best painted last
        cands = cands.select(keep)
    local_boxes = cands.boxes - torch.tensor(
        [offset[0], offset[1], offset[0], offset[1]])
    inst_map = paint_instances(cands.patches, local_boxes, (h, w),
                               device=device)
    visible = torch.bincount(
        inst_map.flatten().long(), minlength=len(cands) + 1)[1:] > 0
    if len(cands) and not bool(visible.all()):
        idx = torch.nonzero(visible.cpu()).flatten()
        lut = torch.zeros(len(cands) + 1, dtype=torch.int32, device=device)
        lut[idx.to(device) + 1] = torch.arange(
            1, len(idx) + 1, dtype=torch.int32, device=device)
        inst_map = lut[inst_map.long()]
        cands = cands.select(idx)
        local_boxes = local_boxes[idx]
    result = InstanceData()
    if with_masks:
        masks = torch.zeros((len(cands), h, w), dtype=torch.bool,
                            device=device)
        for i, (patch, (x1, y1, x2, y2)) in enumerate(
                zip(cands.patches, local_boxes.tolist())):
            masks[i, y1:y2 + 1, x1:x2 + 1] = patch.to(device)
        result.masks = masks
    pid = cands.prompt_ids.to(device)
    result.labels = labels.long().to(device)[pid]
    result.scores = cands.scores.float().to(device)
    result.bboxes = sam_to_mmdet_boxes(cands.boxes).to(device)
    result.points = points.float()[pid]
    return result, inst_map


def rescale_instances(instances: InstanceData, inst_map: Tensor,
                      ori_hw: Sequence[int]
                      ) -> Tuple[InstanceData, Tensor]:
    """Map results from the model frame (h, w) to the original (H, W).

    One convention for everything: maps and masks by nearest-neighbour
    sampling of pixel centres (``nearest-exact``, so a 2x scale repeats
    every pixel 2 x 2 without the half-pixel shift of ``nearest``), boxes
    by the scale, points as pixel centres (``(p + 0.5) * s - 0.5``).

    Args:
        instances (InstanceData): From :func:`stitch_instances`.
        inst_map (Tensor): (h, w) int32 instance map.
        ori_hw (Sequence[int]): (H, W) of the original image.

    Returns:
        tuple[InstanceData, Tensor]: Instances and the (H, W) map.
    """
    ori_h, ori_w = int(ori_hw[0]), int(ori_hw[1])
    h, w = inst_map.shape
    if (ori_h, ori_w) == (h, w):
        return instances, inst_map
    sx, sy = ori_w / w, ori_h / h
    inst_map = F.interpolate(
        inst_map[None, None].float(), size=(ori_h, ori_w),
        mode='nearest-exact')[0, 0].to(torch.int32)
    out = InstanceData()
    if 'masks' in instances:
        masks = instances.masks
        out.masks = F.interpolate(
            masks[:, None].float(), size=(ori_h, ori_w),
            mode='nearest-exact')[:, 0].bool() if len(masks) else \
            masks.new_zeros((0, ori_h, ori_w))
    out.labels = instances.labels
    out.scores = instances.scores
    out.bboxes = instances.bboxes * instances.bboxes.new_tensor(
        [sx, sy, sx, sy])
    out.points = (instances.points + 0.5) * instances.points.new_tensor(
        [sx, sy]) - 0.5
    return out, inst_map


def class_map(inst_map: Tensor, labels: Tensor) -> Tensor:
    """(H, W) uint8 class map: ``label + 1`` on instance pixels.

    Args:
        inst_map (Tensor): (H, W) int instance map, instance i = id i + 1.
        labels (Tensor): (N,) class index of each instance.
    """
    lut = torch.zeros(len(labels) + 1, dtype=torch.uint8,
                      device=inst_map.device)
    lut[1:] = labels.to(inst_map.device).to(torch.uint8) + 1
    return lut[inst_map.long()]
