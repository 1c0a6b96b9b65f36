"""Pairing of predicted and GT nucleus points within a radius.

Two matchers are provided because the literature uses both:

* :func:`pair_coordinates` (HoVer-Net ``pair_coordinates``): a Hungarian
  assignment minimising the total Euclidean distance over *all* points,
  after which pairs farther than ``radius`` are dropped. Used by HoVer-Net's
  ``compute_stats`` (radius 12 px) and by the PanNuke detection protocol.
* :func:`greedy_point_matching` (upstream PromptNucSeg prompter evaluation,
  ``prompter/utils.py:get_tp``): predictions in descending score order each
  take the nearest still-unmatched GT point within ``radius``.

Both use an inclusive radius (distance <= radius). Points are (x, y) in
pixels of the same image frame.
"""
from typing import NamedTuple, Optional

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

__all__ = ['PointPairing', 'pair_coordinates', 'greedy_point_matching']


class PointPairing(NamedTuple):
    """Result of a point matching.

    Attributes:
        pairs (np.ndarray): (K, 2) int64 rows ``[true_index, pred_index]``.
        unpaired_true (np.ndarray): (FN,) int64 unmatched GT indices.
        unpaired_pred (np.ndarray): (FP,) int64 unmatched pred indices.
    """
    pairs: np.ndarray
    unpaired_true: np.ndarray
    unpaired_pred: np.ndarray

    @property
    def tp(self) -> int:
        return int(self.pairs.shape[0])


def _as_points(points: np.ndarray, name: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.size == 0:
        return points.reshape(0, 2)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f'{name}: expected (N, 2) x, y points, got shape '
                         f'{points.shape}')
    if not np.isfinite(points).all():
        raise ValueError(f'{name}: points contain NaN or inf')
    return points


def _pairing(rows: np.ndarray, cols: np.ndarray, n_true: int,
             n_pred: int) -> PointPairing:
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    unpaired_true = np.setdiff1d(np.arange(n_true), rows)
    unpaired_pred = np.setdiff1d(np.arange(n_pred), cols)
    return PointPairing(
        np.stack([rows, cols], axis=1).reshape(-1, 2), unpaired_true,
        unpaired_pred)


def pair_coordinates(true_points: np.ndarray,
                     pred_points: np.ndarray,
                     radius: float = 12.0) -> PointPairing:
    """HoVer-Net point pairing: global Hungarian, then a radius cut.

    The assignment minimises the summed distance over all points before the
    cut, so it does not always maximise the number of pairs within the
    radius; this is HoVer-Net's definition and is kept on purpose.

    Args:
        true_points (np.ndarray): (N, 2) GT points, x, y in pixels.
        pred_points (np.ndarray): (M, 2) predicted points, same frame.
        radius (float): Maximum pairing distance in pixels (inclusive).
            Defaults to 12.0.

    Returns:
        PointPairing: pairs sorted by GT index, and the unpaired indices.
    """
    true_points = _as_points(true_points, 'true_points')
    pred_points = _as_points(pred_points, 'pred_points')
    n_true, n_pred = len(true_points), len(pred_points)
    if n_true == 0 or n_pred == 0:
        return _pairing([], [], n_true, n_pred)
    dist = cdist(true_points, pred_points)
    rows, cols = linear_sum_assignment(dist)
    keep = dist[rows, cols] <= radius
    return _pairing(rows[keep], cols[keep], n_true, n_pred)


def greedy_point_matching(true_points: np.ndarray,
                          pred_points: np.ndarray,
                          pred_scores: Optional[np.ndarray] = None,
                          radius: float = 12.0) -> PointPairing:
    """Upstream PromptNucSeg's greedy score-ordered point matching.

    Predictions are visited by descending score (stable: equal scores keep
    their input order); each takes the nearest unmatched GT point if it is
    within ``radius`` (distance ties go to the lower GT index).

    Args:
        true_points (np.ndarray): (N, 2) GT points, x, y in pixels.
        pred_points (np.ndarray): (M, 2) predicted points, same frame.
        pred_scores (np.ndarray, optional): (M,) confidence scores.
            Defaults to None (input order).
        radius (float): Maximum pairing distance in pixels (inclusive).
            Defaults to 12.0.

    Returns:
        PointPairing: pairs sorted by GT index, and the unpaired indices.
    """
    true_points = _as_points(true_points, 'true_points')
    pred_points = _as_points(pred_points, 'pred_points')
    n_true, n_pred = len(true_points), len(pred_points)
    if pred_scores is None:
        pred_scores = np.zeros(n_pred)
    pred_scores = np.asarray(pred_scores, np.float64).reshape(-1)
    if pred_scores.shape != (n_pred, ):
        raise ValueError(f'pred_scores: expected shape ({n_pred},), got '
                         f'{pred_scores.shape}')
    if n_true == 0 or n_pred == 0:
        return _pairing([], [], n_true, n_pred)
    dist = cdist(pred_points, true_points)
    free = np.ones(n_true, bool)
    rows, cols = [], []
    for p in np.argsort(-pred_scores, kind='stable'):
        # candidates within the radius, nearest first, ties to lower index
        cand = np.flatnonzero((dist[p] <= radius) & free)
        if cand.size == 0:
            continue
        t = cand[np.argmin(dist[p, cand])]
        free[t] = False
        rows.append(t)
        cols.append(p)
        if not free.any():
            break
    order = np.argsort(rows, kind='stable')
    return _pairing(
        np.asarray(rows)[order],
        np.asarray(cols)[order], n_true, n_pred)
