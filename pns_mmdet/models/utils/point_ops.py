"""Point helpers for the prompter: greedy point NMS, point <-> box, frames.

Coordinate convention (docs/design.md): a point (x, y) is in input-image
pixels with pixel centres at integer coordinates, so it lies in pixel column
``round(x)``, row ``round(y)``; pixel ``i`` spans ``[i - 0.5, i + 0.5)``.
"""
from typing import Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from torch import Tensor


def point_nms(points: Tensor, scores: Tensor, radius: float) -> Tensor:
    """Greedy class-agnostic point NMS within a radius, vectorised.

    Points are visited in descending score; a kept point suppresses every
    other point at Euclidean distance ``<= radius`` (upstream PromptNucSeg
    ``point_nms``). Instead of a Python loop over points, the close pairs
    are found with a KD-tree and the greedy result is resolved in whole-array
    rounds: an undecided point none of whose higher-ranked neighbours is
    undecided or kept is kept, then every undecided point with a kept
    higher-ranked neighbour is suppressed. The highest-ranked undecided
    point is resolved in every round, so the loop ends, and the result is
    exactly the greedy one. The number of rounds is the length of the
    longest chain of close points in decreasing score order (2-4 for
    predictions, even random ones). Runs on CPU (NumPy/SciPy); the indices
    are returned on the device of ``scores``.

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
    num = len(points)
    if radius <= 0 or num < 2:
        return order
    pts = points[order].detach().double().cpu().numpy()
    # Pairs (hi, lo) with hi < lo, i.e. hi ranked first: hi may suppress lo.
    pairs = cKDTree(pts).query_pairs(radius, output_type='ndarray')
    hi, lo = pairs[:, 0], pairs[:, 1]
    undecided, kept, suppressed = 0, 1, -1
    state = np.zeros(num, dtype=np.int8)
    while True:
        is_undecided = state == undecided
        if not is_undecided.any():
            break
        active = state[lo] == undecided  # pairs that can still matter
        hi, lo = hi[active], lo[active]
        blocked = np.zeros(num, dtype=bool)
        blocked[lo[state[hi] != suppressed]] = True
        state[is_undecided & ~blocked] = kept
        hit = np.zeros(num, dtype=bool)
        hit[lo[state[hi] == kept]] = True
        state[hit & (state == undecided)] = suppressed
    keep = torch.from_numpy(np.flatnonzero(state == kept)).to(order.device)
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


def anchor_grid(grid_hw: Tuple[int, int], stride: int,
                device: torch.device = torch.device('cpu'),
                dtype: torch.dtype = torch.float32) -> Tensor:
    """Anchor points ``stride/2 + k*stride`` in input pixels.

    Args:
        grid_hw (tuple[int, int]): (Ha, Wa) anchors along y and x, i.e.
            padded input size // stride.
        stride (int): Anchor stride (λ), pixels.
        device (torch.device): Device of the result.
        dtype (torch.dtype): Dtype of the result.

    Returns:
        Tensor: (Ha, Wa, 2) x, y of each anchor.
    """
    ha, wa = grid_hw
    half = stride / 2.0
    ys = torch.arange(ha, device=device, dtype=dtype) * stride + half
    xs = torch.arange(wa, device=device, dtype=dtype) * stride + half
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing='ij')
    return torch.stack([grid_x, grid_y], dim=-1)


def sample_at_points(feat: Tensor, stride: float, points: Tensor) -> Tensor:
    """Bilinearly sample a feature map at input-frame points.

    Args:
        feat (Tensor): (B, C, h, w) feature map of the given stride.
        stride (float): Its stride in input pixels.
        points (Tensor): (B, Ha, Wa, 2) x, y in input pixels.

    Returns:
        Tensor: (B, C, Ha, Wa) sampled features.
    """
    grid = points_to_grid(points, stride, feat.shape[-2:])
    # Border padding: edge anchors of inputs whose size is not a multiple
    # of the coarsest stride fall just outside that level.
    return F.grid_sample(
        feat,
        grid.to(feat.dtype),
        mode='bilinear',
        padding_mode='border',
        align_corners=False)
