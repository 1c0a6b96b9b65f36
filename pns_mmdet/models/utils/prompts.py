"""Point prompts for the SAM segmentor: positives plus nearest negatives.

PromptNucSeg (paper Eq. 7) prompts SAM with one positive point inside the
target nucleus and the points of its ``k`` nearest *other* nuclei as negative
points, so that touching nuclei are not merged into one mask.
"""
from typing import Optional, Tuple

from mmdet.structures import DetDataSample

import torch
from mmengine.logging import print_log
from torch import Tensor

__all__ = [
    'build_point_prompts', 'sample_interior_points',
    'resolve_num_neg_prompts', 'sample_training_prompts'
]

# SAM's point labels: 1 foreground, 0 background, -1 "not a point" (padding).
POSITIVE_LABEL = 1
NEGATIVE_LABEL = 0
PADDING_LABEL = -1

# K overrides already reported (an engine is built per image).
_LOGGED_OVERRIDES = set()


def build_point_prompts(points: Tensor, k: int) -> Tuple[Tensor, Tensor]:
    """Pair every point with its ``k`` nearest other points as negatives.

    Args:
        points (Tensor): (N, 2) float x, y prompt points of N nuclei, any
            pixel frame (the same frame is returned).
        k (int): Number of negative prompts per nucleus (K in the paper;
            0 gives positive-only prompts).

    Returns:
        Tuple[Tensor, Tensor]:

        - coords (Tensor): (N, 1 + k, 2), same dtype and device as
          ``points``. Row i holds point i first, then the points of its k
          nearest other nuclei in increasing Euclidean distance (ties broken
          by the lower index), then (0, 0) padding where fewer than k other
          nuclei exist.
        - labels (Tensor): (N, 1 + k) int64: 1 for the positive, 0 for the
          negatives, -1 for the padding.
    """
    if points.dim() != 2 or points.size(-1) != 2:
        raise ValueError('build_point_prompts: points must have shape (N, 2) '
                         f'(x, y), got {tuple(points.shape)}')
    if k < 0:
        raise ValueError(f'build_point_prompts: k must be >= 0, got {k}')
    num_points = points.size(0)
    coords = points.new_zeros((num_points, 1 + k, 2))
    labels = torch.full((num_points, 1 + k),
                        PADDING_LABEL,
                        dtype=torch.long,
                        device=points.device)
    coords[:, 0] = points
    labels[:, 0] = POSITIVE_LABEL
    num_neg = min(k, num_points - 1)
    if num_neg <= 0:
        return coords, labels
    dists = torch.cdist(points.double(), points.double())
    # A nucleus is never its own negative, even if another one shares its
    # point: exclude the diagonal by index, not by distance.
    dists.fill_diagonal_(float('inf'))
    # Stable sort so that equal distances keep index order (reproducible).
    order = torch.sort(dists, dim=1, stable=True).indices[:, :num_neg]
    coords[:, 1:1 + num_neg] = points[order]
    labels[:, 1:1 + num_neg] = NEGATIVE_LABEL
    return coords, labels


def sample_interior_points(
        masks: Tensor,
        generator: Optional[torch.Generator] = None) -> Tensor:
    """Draw one pixel uniformly at random inside each mask.

    Args:
        masks (Tensor): (N, H, W) bool (or 0/1) instance masks; every mask
            must contain at least one pixel.
        generator (torch.Generator, optional): Random generator on the
            masks' device, for reproducible draws.

    Returns:
        Tensor: (N, 2) float32 x, y of the drawn pixels (pixel centres at
        integer coordinates: the point (x, y) lies in column x, row y).

    Raises:
        ValueError: If ``masks`` is not 3-D or a mask is empty.
    """
    if masks.dim() != 3:
        raise ValueError('sample_interior_points: masks must have shape '
                         f'(N, H, W), got {tuple(masks.shape)}')
    masks = masks.bool()
    num_masks = masks.size(0)
    if num_masks == 0:
        return masks.new_zeros((0, 2), dtype=torch.float32)
    areas = masks.flatten(1).sum(1)
    if (areas == 0).any():
        empty = torch.nonzero(areas == 0).flatten().tolist()
        raise ValueError('sample_interior_points: masks ' + str(empty[:10]) +
                         ' are empty; drop empty instances before prompting')
    # nonzero() lists pixels mask by mask (row-major), so the r-th pixel of
    # mask i sits at offset(i) + r.
    nonzero = torch.nonzero(masks)  # (sum of areas, 3): mask, y, x
    offsets = torch.cumsum(areas, 0) - areas
    rand = torch.rand(
        num_masks, generator=generator, device=masks.device)
    # rand < 1, but float rounding of rand * area can still reach area.
    picks = torch.minimum((rand * areas).long(), areas - 1)
    chosen = nonzero[offsets + picks]
    return chosen[:, [2, 1]].float()


def resolve_num_neg_prompts(k: int, override: Optional[int],
                            where: str) -> int:
    """The K to use: the segmentor's own, unless ``override`` says else.

    K (``num_neg_prompts``) is set once per segmentor and used for training
    and testing; a train/test config may override it on purpose (e.g. the
    K ablation of docs/segmentor.md), and the override is logged. This is
    the only place K is resolved.

    Args:
        k (int): The segmentor's K.
        override (int, optional): A config's value; None keeps ``k``.
        where (str): Which config asks, for the log line.

    Returns:
        int: K >= 0.
    """
    value = int(k if override is None else override)
    if value < 0:
        raise ValueError(f'{where}: num_neg_prompts must be >= 0, got '
                         f'{value}')
    if override is not None and value != int(k) and (
            where, value, int(k)) not in _LOGGED_OVERRIDES:
        _LOGGED_OVERRIDES.add((where, value, int(k)))
        print_log(
            f'{where}: num_neg_prompts={value} overrides the segmentor\'s '
            f'K={k}', logger='current')
    return value


def sample_training_prompts(sample: DetDataSample, img_size: int,
                            num_prompts: int, k: int,
                            device: torch.device
                            ) -> Optional[Tuple[Tensor, Tensor, Tensor]]:
    """Draw the training prompts of one image (paper Eq. 2, 7).

    A positive point is drawn uniformly inside every nucleus mask, each
    nucleus gets the points of its ``k`` nearest others as negatives, and
    ``num_prompts`` (Z) nuclei are chosen at random.

    Args:
        sample (DetDataSample): With ``gt_instances.masks`` (BitmapMasks in
            the padded ``img_size`` x ``img_size`` input frame).
        img_size (int): Side of the model input.
        num_prompts (int): Z.
        k (int): K.
        device (torch.device): Device of the results.

    Returns:
        tuple | None: coords (Z', 1 + k, 2), labels (Z', 1 + k) and target
        masks (Z', S, S) bool, Z' = min(Z, nuclei); None without nuclei.
    """
    gt_masks = sample.gt_instances.masks
    if len(gt_masks) == 0:
        return None
    masks = gt_masks.to_tensor(dtype=torch.bool, device=device)
    if tuple(masks.shape[-2:]) != (img_size, img_size):
        raise ValueError(
            f'gt_instances.masks of {sample.metainfo.get("img_path")} are '
            f'{tuple(masks.shape[-2:])}, expected the padded {img_size} x '
            f'{img_size} input frame (enable data_preprocessor '
            'pad_mask=True)')
    masks = masks[masks.flatten(1).any(1)]  # masks cropped away entirely
    if len(masks) == 0:
        return None
    coords, labels = build_point_prompts(sample_interior_points(masks), k)
    chosen = torch.randperm(len(masks), device=masks.device)[:num_prompts]
    return coords[chosen], labels[chosen], masks[chosen]
