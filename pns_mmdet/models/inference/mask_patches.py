"""Mask patches: boxes, crops, upsampling around a mask, painting.

Kept masks travel as box-sized bool patches with their SAM box (inclusive
maxima, see :mod:`.tiling`), so memory grows with the nuclei, not with
tiles x H x W.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'masks_to_sam_boxes', 'sam_to_mmdet_boxes', 'crop_masks',
    'paint_instances', 'upsampled_mask_patches'
]


def masks_to_sam_boxes(masks: Tensor) -> Tensor:
    """Tight boxes of binary masks with inclusive maxima.

    Args:
        masks (Tensor): (N, H, W) bool masks.

    Returns:
        Tensor: (N, 4) long ``x1, y1, x2, y2`` where x2/y2 are the last
        mask column/row; empty masks get ``(0, 0, 0, 0)`` (as
        ``segment_anything``'s ``batched_mask_to_box``).
    """
    n, h, w = masks.shape
    if n == 0:
        return masks.new_zeros((0, 4), dtype=torch.long)
    cols = masks.any(dim=1)  # (N, W)
    rows = masks.any(dim=2)  # (N, H)
    xs = torch.arange(w, device=masks.device)
    ys = torch.arange(h, device=masks.device)
    big = max(h, w)
    x1 = torch.where(cols, xs, big).min(dim=1).values
    x2 = torch.where(cols, xs, -1).max(dim=1).values
    y1 = torch.where(rows, ys, big).min(dim=1).values
    y2 = torch.where(rows, ys, -1).max(dim=1).values
    boxes = torch.stack([x1, y1, x2, y2], dim=1)
    empty = ~cols.any(dim=1)
    return boxes.masked_fill(empty[:, None], 0)


def sam_to_mmdet_boxes(boxes: Tensor) -> Tensor:
    """Convert inclusive-max boxes to mmdet's exclusive-max float boxes.

    Args:
        boxes (Tensor): (N, 4) x1, y1, x2, y2 with inclusive maxima.

    Returns:
        Tensor: (N, 4) float32 x1, y1, x2 + 1, y2 + 1.
    """
    out = boxes.float().clone()
    out[:, 2:] += 1
    return out


def crop_masks(masks: Tensor, boxes: Tensor) -> List[Tensor]:
    """Cut each mask to its box, so a kept mask costs its box, not H x W.

    Args:
        masks (Tensor): (N, H, W) bool masks.
        boxes (Tensor): (N, 4) SAM boxes (inclusive maxima) in the masks'
            frame.

    Returns:
        list[Tensor]: N bool patches of shape (y2 - y1 + 1, x2 - x1 + 1)
        (copies, so the full stack can be freed).
    """
    patches = []
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.tolist()):
        patches.append(mask[y1:y2 + 1, x1:x2 + 1].clone())
    return patches


def paint_instances(patches: Sequence[Tensor], boxes: Tensor,
                    img_hw: Sequence[int],
                    device: torch.device = None) -> Tensor:
    """Paint mask patches into an instance map; later patches win overlaps.

    Instance ``i`` (0-based) gets id ``i + 1``, so pass the patches in
    ascending score order to let higher scores overwrite lower ones
    (upstream's painting order).

    Args:
        patches (Sequence[Tensor]): N bool patches, patch i of shape
            (y2 - y1 + 1, x2 - x1 + 1) of ``boxes[i]``.
        boxes (Tensor): (N, 4) SAM boxes (inclusive maxima), image pixels.
        img_hw (Sequence[int]): (H, W) of the map.
        device (torch.device, optional): Device of the map.

    Returns:
        Tensor: (H, W) int32 instance map, 0 = background.
    """
    h, w = int(img_hw[0]), int(img_hw[1])
    inst_map = torch.zeros((h, w), dtype=torch.int32, device=device)
    for i, (patch, (x1, y1, x2, y2)) in enumerate(zip(patches,
                                                      boxes.tolist())):
        region = inst_map[y1:y2 + 1, x1:x2 + 1]
        if region.shape != patch.shape:
            raise ValueError(f'paint_instances: patch {i} has shape '
                             f'{tuple(patch.shape)} but its box '
                             f'{(x1, y1, x2, y2)} inside a {h}x{w} image '
                             f'covers {tuple(region.shape)}')
        region[patch.to(region.device)] = i + 1
    return inst_map


def upsampled_mask_patches(low_logits: Tensor, out_hw: Tuple[int, int],
                           threshold: float,
                           valid_hw: Tuple[int, int] = None
                           ) -> Tuple[Tensor, List[Tensor]]:
    """Threshold bilinearly upsampled mask logits, only around each mask.

    Equals ``F.interpolate(low_logits[:, None], out_hw, mode='bilinear',
    align_corners=False)[:, 0, :vh, :vw] > threshold`` followed by
    :func:`masks_to_sam_boxes` and :func:`crop_masks`, without building the
    (N, H, W) stack: an upsampled pixel is a convex combination of its 2 x 2
    low-resolution neighbours, so it can only exceed the threshold next to
    a low-resolution pixel that does. Each mask's window (its low-resolution
    box plus a margin that keeps the interpolation neighbours, hence the
    values, identical) is upsampled alone.

    Args:
        low_logits (Tensor): (N, h, w) decoder logits.
        out_hw (tuple[int, int]): (H, W) of the full upsampling, integer
            multiples of (h, w).
        threshold (float): Mask logit threshold.
        valid_hw (tuple[int, int], optional): Keep only the top-left
            (vh, vw) region (a tile's valid part). Defaults to ``out_hw``.

    Returns:
        tuple[Tensor, list[Tensor]]: (N, 4) long SAM boxes (inclusive
        maxima, zeros for empty masks) in the output frame, and N bool
        patches of the box size (empty (0, 0) patches for empty masks).
    """
    n, h, w = low_logits.shape
    out_h, out_w = out_hw
    if out_h % h or out_w % w:
        raise ValueError(f'upsampled_mask_patches: output {out_hw} is not '
                         f'an integer multiple of the logits ({h}, {w})')
    sy, sx = out_h // h, out_w // w
    vh, vw = valid_hw if valid_hw is not None else out_hw
    pos = low_logits > threshold
    low_boxes = masks_to_sam_boxes(pos).tolist()
    nonempty = pos.flatten(1).any(dim=1).tolist()
    boxes = torch.zeros((n, 4), dtype=torch.long)
    patches: List[Tensor] = []
    empty = low_logits.new_zeros((0, 0), dtype=torch.bool)
    for i in range(n):
        if not nonempty[i]:
            patches.append(empty)
            continue
        jx1, jy1, jx2, jy2 = low_boxes[i]
        # Two low-res pixels of margin: the upsampled window then has the
        # same interpolation neighbours (and values) as the full upsampling
        # wherever it can exceed the threshold.
        ax, bx = max(jx1 - 2, 0), min(jx2 + 3, w)
        ay, by = max(jy1 - 2, 0), min(jy2 + 3, h)
        up = F.interpolate(
            low_logits[i, None, None, ay:by, ax:bx],
            size=((by - ay) * sy, (bx - ax) * sx),
            mode='bilinear',
            align_corners=False)[0, 0] > threshold
        # Window -> output frame, cut to the valid region.
        oy, ox = ay * sy, ax * sx
        up = up[:max(0, vh - oy), :max(0, vw - ox)]
        if not bool(up.any()):
            patches.append(empty)
            continue
        rows = torch.nonzero(up.any(dim=1)).flatten()
        cols = torch.nonzero(up.any(dim=0)).flatten()
        y1, y2 = int(rows[0]), int(rows[-1])
        x1, x2 = int(cols[0]), int(cols[-1])
        patches.append(up[y1:y2 + 1, x1:x2 + 1].clone())
        boxes[i] = torch.tensor([x1 + ox, y1 + oy, x2 + ox, y2 + oy])
    return boxes, patches
