"""All pairwise GT/prediction intersections of two instance maps at once."""
from typing import NamedTuple

import numpy as np

from .instance_map import _compact_index, _ids_areas, check_instance_map

__all__ = ['InstanceOverlaps', 'pairwise_overlaps']

# Dense bincount over n_true * n_pred bins up to this size (32 MB of
# counts); beyond it the overlapping pixels' keys are sorted instead.
_MAX_DENSE_BINS = 1 << 22


class InstanceOverlaps(NamedTuple):
    """Areas and non-zero pairwise intersections of two instance maps.

    Instances are indexed 0..G-1 (GT) and 0..P-1 (prediction) in increasing
    id order; only pairs that share at least one pixel are listed (sorted by
    GT index, then prediction index).

    Attributes:
        true_ids (np.ndarray): (G,) int64 GT instance ids, ascending.
        pred_ids (np.ndarray): (P,) int64 predicted instance ids, ascending.
        true_areas (np.ndarray): (G,) int64 pixel counts.
        pred_areas (np.ndarray): (P,) int64 pixel counts.
        pair_true (np.ndarray): (K,) int64 GT index of each overlapping pair.
        pair_pred (np.ndarray): (K,) int64 prediction index of each pair.
        pair_inter (np.ndarray): (K,) int64 intersection (pixels, > 0).
    """
    true_ids: np.ndarray
    pred_ids: np.ndarray
    true_areas: np.ndarray
    pred_areas: np.ndarray
    pair_true: np.ndarray
    pair_pred: np.ndarray
    pair_inter: np.ndarray

    @property
    def num_true(self) -> int:
        return int(self.true_ids.size)

    @property
    def num_pred(self) -> int:
        return int(self.pred_ids.size)

    @property
    def pair_union(self) -> np.ndarray:
        """(K,) int64 union of each overlapping pair."""
        return (self.true_areas[self.pair_true] +
                self.pred_areas[self.pair_pred] - self.pair_inter)


def pairwise_overlaps(true: np.ndarray, pred: np.ndarray) -> InstanceOverlaps:
    """Count every GT/prediction intersection in one pass over the pixels.

    Intersections come from a contingency count of (GT index, prediction
    index) over the pixels covered by both maps (``np.bincount`` on
    ``g * P + p``), never from per-instance mask loops.

    Args:
        true (np.ndarray): (H, W) GT instance map, ids >= 0, 0 background.
        pred (np.ndarray): (H, W) predicted instance map, same shape.

    Returns:
        InstanceOverlaps: areas and overlapping pairs.
    """
    true = check_instance_map(true, 'true instance map')
    pred = check_instance_map(pred, 'pred instance map')
    if true.shape != pred.shape:
        raise ValueError(f'true and pred instance maps differ in shape: '
                         f'{true.shape} vs {pred.shape}')
    t_flat, p_flat = true.ravel(), pred.ravel()
    t_ids, t_areas = _ids_areas(t_flat)
    p_ids, p_areas = _ids_areas(p_flat)
    n_true, n_pred = t_ids.size, p_ids.size
    empty = np.zeros(0, np.int64)
    if n_true == 0 or n_pred == 0:
        return InstanceOverlaps(t_ids, p_ids, t_areas, p_areas, empty, empty,
                                empty)
    both = (t_flat > 0) & (p_flat > 0)
    ti = _compact_index(t_flat[both], t_ids)
    pi = _compact_index(p_flat[both], p_ids)
    keys = ti * n_pred + pi
    if n_true * n_pred <= _MAX_DENSE_BINS:
        counts = np.bincount(keys, minlength=n_true * n_pred)
        keys = np.flatnonzero(counts)
        inter = counts[keys]
    else:
        keys, inter = np.unique(keys, return_counts=True)
    return InstanceOverlaps(t_ids, p_ids, t_areas, p_areas, keys // n_pred,
                            keys % n_pred, inter.astype(np.int64))
