"""Point helpers for the prompter: greedy point NMS, point <-> box, frames.

Coordinate convention (docs/design.md): a point (x, y) is in input-image
pixels with pixel centres at integer coordinates, so it lies in pixel column
``round(x)``, row ``round(y)``; pixel ``i`` spans ``[i - 0.5, i + 0.5)``.
"""
from typing import Sequence, Tuple, Union

import torch
from torch import Tensor


def point_nms(points: Tensor, scores: Tensor, radius: float) -> Tensor:
    """Greedy class-agnostic point NMS within a radius, vectorised.

    Points are visited in descending score; a kept point suppresses every
    other point at Euclidean distance ``<= radius`` (upstream PromptNucSeg
    ``point_nms``). Instead of a Python loop over points, the greedy result
    is computed as the fixed point of ``keep[j] = not any(keep[i] and
    d(i, j) <= radius for i ranked before j)``, iterated on the whole vector;
    the fixed point is unique and equals the greedy answer, and the number of
    iterations is the length of the longest suppression chain (a few).

    Args:
        points (Tensor): (N, 2) x, y in pixels.
        scores (Tensor): (N,) scores; higher is visited first.
        radius (float): Suppression radius in pixels. ``<= 0`` disables NMS.

    Returns:
        Tensor: (K,) long indices of the kept points into ``points``, in
        descending score order.
    """
    if points.dim() != 2 or points.shape[-1] != 2:
        raise ValueError(
            f'point_nms expects points of shape (N, 2), got {points.shape}')
    if scores.shape != points.shape[:1]:
        raise ValueError(f'point_nms expects scores of shape ({len(points)},)'
                         f', got {tuple(scores.shape)}')
    order = scores.argsort(descending=True, stable=True)
    if radius <= 0 or len(points) < 2:
        return order
    pts = points[order].float()
    close = torch.cdist(
        pts, pts, compute_mode='donot_use_mm_for_euclid_dist') <= radius
    # Only higher-ranked points may suppress: strictly upper triangle
    # (row i suppresses column j > i).
    close = torch.triu(close, diagonal=1)
    keep = torch.ones(len(pts), dtype=torch.bool, device=pts.device)
    for _ in range(len(pts)):
        suppressed = (close & keep[:, None]).any(dim=0)
        new_keep = ~suppressed
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep]


def points_to_boxes(points: Tensor, box_size: float) -> Tensor:
    """Square boxes of side ``box_size`` centred on the points.

    Used to give mmdet's visualiser (which draws ``bboxes``) something to
    draw for point predictions.

    Args:
        points (Tensor): (N, 2) x, y.
        box_size (float): Side length in pixels.

    Returns:
        Tensor: (N, 4) boxes x1, y1, x2, y2.
    """
    half = box_size / 2.0
    return torch.cat([points - half, points + half], dim=-1)


def boxes_to_points(boxes: Tensor) -> Tensor:
    """Centres of xyxy boxes.

    Args:
        boxes (Tensor): (N, 4) x1, y1, x2, y2.

    Returns:
        Tensor: (N, 2) x, y.
    """
    return (boxes[:, :2] + boxes[:, 2:]) / 2.0


def clip_points(points: Tensor, img_shape: Sequence[int]) -> Tensor:
    """Clip points to the pixel centres of an image.

    Args:
        points (Tensor): (N, 2) x, y.
        img_shape (Sequence[int]): (h, w) of the image.

    Returns:
        Tensor: (N, 2) points with x in [0, w - 1] and y in [0, h - 1].
    """
    h, w = img_shape[:2]
    x = points[:, 0].clamp(0, w - 1)
    y = points[:, 1].clamp(0, h - 1)
    return torch.stack([x, y], dim=-1)


def rescale_points(points: Tensor,
                   scale_factor: Union[Tuple[float, float], Sequence[float]]
                   ) -> Tensor:
    """Map points from a resized frame back to the original image frame.

    mmdet's ``scale_factor`` is (w_scale, h_scale) = resized / original. With
    pixel centres at integer coordinates the exact inverse of a resize is
    ``x = (x' + 0.5) / s - 0.5``; it equals ``x' / s`` when ``s == 1`` and
    differs from plain division by half a pixel times ``1 - 1/s`` otherwise.

    Args:
        points (Tensor): (N, 2) x', y' in the resized frame.
        scale_factor (tuple[float, float]): (w_scale, h_scale).

    Returns:
        Tensor: (N, 2) x, y in the original frame.
    """
    scale = points.new_tensor(list(scale_factor)[:2])
    return (points + 0.5) / scale - 0.5


def points_to_grid(points: Tensor, stride: float,
                   feat_hw: Sequence[int]) -> Tensor:
    """Normalise input-frame points for ``F.grid_sample(align_corners=False)``.

    Feature cell ``j`` of a level with stride ``s`` covers input pixels
    ``j*s .. j*s + s - 1``, so its centre is at input coordinate
    ``j*s + (s - 1)/2``; equivalently, input coordinate ``x`` is feature
    coordinate ``u = (x + 0.5)/s - 0.5``. With ``align_corners=False``
    grid_sample maps ``g`` to ``u = ((g + 1) * W - 1) / 2``, hence
    ``g = 2 * (x + 0.5) / (s * W) - 1``. (Upstream normalises ``2x/(sW) - 1``
    with ``align_corners=True``, which is off by up to half a cell.)

    Args:
        points (Tensor): (..., 2) x, y in input pixels.
        stride (float): Feature stride ``s``.
        feat_hw (Sequence[int]): (H, W) of the feature map.

    Returns:
        Tensor: (..., 2) grid coordinates in [-1, 1] for points inside.
    """
    h, w = feat_hw[-2:]
    size = points.new_tensor([w * stride, h * stride])
    return 2.0 * (points + 0.5) / size - 1.0
