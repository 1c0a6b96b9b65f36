"""AJI, AJI+ and PQ (DQ, SQ) with HoVer-Net's definitions.

The definitions follow HoVer-Net's ``metrics/stats_utils.py``
(``get_fast_aji``, ``get_fast_aji_plus``, ``get_fast_pq``), which
PromptNucSeg uses for every reported number, with these differences that
only affect inputs HoVer-Net cannot handle:

* ids need not be contiguous (no ``remap_label`` needed beforehand);
* empty maps never crash. Convention: if **both** maps are empty every
  metric is NaN (0/0, undefined; aggregations use nanmean and skip it);
  if only one of them is empty every metric is 0;
* SQ is ``sum(IoU) / TP`` exactly (HoVer-Net adds 1e-6 to TP, which changes
  values by < 1e-6 relative), and 0 when there is no match.

AJI and AJI+ keep HoVer-Net's ``inter / (union + 1e-6)`` IoU for choosing
pairs, so ties are broken the same way.
"""
from typing import Dict, NamedTuple, Optional

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .overlaps import InstanceOverlaps, pairwise_overlaps

__all__ = [
    'PQResult', 'aji', 'aji_plus', 'pq', 'instance_metrics',
    'aji_from_overlaps', 'aji_plus_from_overlaps', 'pq_from_overlaps',
    'max_weight_unique_pairs'
]

_HOVER_EPS = 1.0e-6


class PQResult(NamedTuple):
    """Panoptic quality of one image and the pairing behind it.

    Attributes:
        dq (float): Detection quality TP / (TP + FP/2 + FN/2).
        sq (float): Segmentation quality, mean IoU of the matched pairs.
        pq (float): DQ * SQ.
        paired_true (np.ndarray): (TP,) GT ids (as in the input map).
        paired_pred (np.ndarray): (TP,) predicted ids matched to them.
        paired_iou (np.ndarray): (TP,) IoU of each matched pair.
        unpaired_true (np.ndarray): (FN,) unmatched GT ids.
        unpaired_pred (np.ndarray): (FP,) unmatched predicted ids.
    """
    dq: float
    sq: float
    pq: float
    paired_true: np.ndarray
    paired_pred: np.ndarray
    paired_iou: np.ndarray
    unpaired_true: np.ndarray
    unpaired_pred: np.ndarray

    @property
    def tp(self) -> int:
        return int(self.paired_true.size)

    @property
    def fp(self) -> int:
        return int(self.unpaired_pred.size)

    @property
    def fn(self) -> int:
        return int(self.unpaired_true.size)


def max_weight_unique_pairs(rows: np.ndarray, cols: np.ndarray,
                            weights: np.ndarray) -> np.ndarray:
    """Maximum-weight one-to-one matching on a sparse bipartite graph.

    Equivalent to ``linear_sum_assignment(-W)`` on the dense matrix (zeros
    for absent edges) followed by dropping zero-weight pairs, as HoVer-Net
    does, but solved per connected component: most nuclei overlap a single
    counterpart, so only the few tangled groups need the Hungarian solver.

    Args:
        rows (np.ndarray): (K,) row index of each edge.
        cols (np.ndarray): (K,) column index of each edge (unique pairs).
        weights (np.ndarray): (K,) positive edge weights.

    Returns:
        np.ndarray: indices into the K edges of the selected pairs.
    """
    k = rows.size
    if k == 0:
        return np.zeros(0, np.int64)
    # compact row/col ids so the graph only holds nodes with edges
    r_ids, r = np.unique(rows, return_inverse=True)
    c_ids, c = np.unique(cols, return_inverse=True)
    n_r, n_c = r_ids.size, c_ids.size
    graph = coo_matrix((np.ones(k), (r, c + n_r)), shape=(n_r + n_c, ) * 2)
    _, node_comp = connected_components(graph, directed=False)
    edge_comp = node_comp[r]
    comp_edges = np.bincount(edge_comp)
    single = comp_edges[edge_comp] == 1
    selected = [np.flatnonzero(single)]
    multi = np.flatnonzero(~single)
    if multi.size:
        multi = multi[np.argsort(edge_comp[multi], kind='stable')]
        bounds = np.flatnonzero(np.diff(edge_comp[multi])) + 1
        for group in np.split(multi, bounds):
            gr_ids, gr = np.unique(r[group], return_inverse=True)
            gc_ids, gc = np.unique(c[group], return_inverse=True)
            dense = np.zeros((gr_ids.size, gc_ids.size))
            dense[gr, gc] = weights[group]
            edge_at = np.full(dense.shape, -1, np.int64)
            edge_at[gr, gc] = group
            sr, sc = linear_sum_assignment(dense, maximize=True)
            chosen = edge_at[sr, sc]
            selected.append(chosen[chosen >= 0])
    return np.sort(np.concatenate(selected))


def aji_from_overlaps(ov: InstanceOverlaps) -> float:
    """MoNuSeg AJI from precomputed overlaps; see :func:`aji`."""
    if ov.num_true == 0 and ov.num_pred == 0:
        return float('nan')
    inter = ov.pair_inter
    union = ov.pair_union
    iou = inter / (union + _HOVER_EPS)
    # per GT: the highest IoU, ties to the lowest prediction index
    # (np.argmax semantics); GTs without any overlap stay unpaired.
    order = np.lexsort((ov.pair_pred, -iou, ov.pair_true))
    gt_sorted = ov.pair_true[order]
    first = np.ones(order.size, bool)
    first[1:] = gt_sorted[1:] != gt_sorted[:-1]
    best = order[first]
    paired_true = ov.pair_true[best]
    paired_pred = np.unique(ov.pair_pred[best])
    overall_inter = inter[best].sum()
    # a prediction reused by several GTs counts in each of their unions
    overall_union = (union[best].sum() + ov.true_areas.sum() -
                     ov.true_areas[paired_true].sum() + ov.pred_areas.sum() -
                     ov.pred_areas[paired_pred].sum())
    return float(overall_inter / overall_union)


def aji_plus_from_overlaps(ov: InstanceOverlaps) -> float:
    """AJI+ from precomputed overlaps; see :func:`aji_plus`."""
    if ov.num_true == 0 and ov.num_pred == 0:
        return float('nan')
    inter = ov.pair_inter
    union = ov.pair_union
    sel = max_weight_unique_pairs(ov.pair_true, ov.pair_pred,
                                  inter / (union + _HOVER_EPS))
    overall_union = (union[sel].sum() + ov.true_areas.sum() -
                     ov.true_areas[ov.pair_true[sel]].sum() +
                     ov.pred_areas.sum() -
                     ov.pred_areas[ov.pair_pred[sel]].sum())
    return float(inter[sel].sum() / overall_union)


def pq_from_overlaps(ov: InstanceOverlaps,
                     match_iou: float = 0.5,
                     true_keep: Optional[np.ndarray] = None,
                     pred_keep: Optional[np.ndarray] = None) -> PQResult:
    """PQ from precomputed overlaps, optionally on a subset of instances.

    Args:
        ov (InstanceOverlaps): Overlaps of the two maps.
        match_iou (float): IoU threshold; pairs need IoU strictly above it.
            Defaults to 0.5.
        true_keep (np.ndarray, optional): (G,) bool, GT instances to keep
            (e.g. one class). Defaults to None (all).
        pred_keep (np.ndarray, optional): (P,) bool, predictions to keep.
            Defaults to None (all).

    Returns:
        PQResult: see :func:`pq`.
    """
    if match_iou < 0:
        raise ValueError(f'match_iou must be >= 0, got {match_iou}')
    if true_keep is None:
        true_keep = np.ones(ov.num_true, bool)
    if pred_keep is None:
        pred_keep = np.ones(ov.num_pred, bool)
    pairs = true_keep[ov.pair_true] & pred_keep[ov.pair_pred]
    pt, pp = ov.pair_true[pairs], ov.pair_pred[pairs]
    inter = ov.pair_inter[pairs]
    union = (ov.true_areas[pt] + ov.pred_areas[pp] - inter)
    iou = inter / union
    if match_iou >= 0.5:
        # IoU > 0.5 pairs are unique by construction: no assignment needed
        sel = np.flatnonzero(iou > match_iou)
    else:
        sel = max_weight_unique_pairs(pt, pp, iou)
        sel = sel[iou[sel] > match_iou]
    n_true, n_pred = int(true_keep.sum()), int(pred_keep.sum())
    tp = sel.size
    matched_t = np.zeros(ov.num_true, bool)
    matched_p = np.zeros(ov.num_pred, bool)
    matched_t[pt[sel]] = True
    matched_p[pp[sel]] = True
    paired_iou = iou[sel]
    if n_true == 0 and n_pred == 0:
        dq = sq = float('nan')
    else:
        fp, fn = n_pred - tp, n_true - tp
        dq = tp / (tp + 0.5 * fp + 0.5 * fn)
        sq = float(paired_iou.sum() / tp) if tp else 0.0
    return PQResult(dq=float(dq),
                    sq=float(sq),
                    pq=float(dq * sq),
                    paired_true=ov.true_ids[pt[sel]],
                    paired_pred=ov.pred_ids[pp[sel]],
                    paired_iou=paired_iou,
                    unpaired_true=ov.true_ids[true_keep & ~matched_t],
                    unpaired_pred=ov.pred_ids[pred_keep & ~matched_p])


def aji(true: np.ndarray, pred: np.ndarray) -> float:
    """Aggregated Jaccard Index as distributed by MoNuSeg.

    Every GT instance is paired with the prediction of highest IoU (a
    prediction may be reused by several GTs, hence over-penalisation);
    AJI = sum of the pairs' intersections / (sum of their unions + areas of
    all unpaired GT and unpaired predicted instances).

    Args:
        true (np.ndarray): (H, W) GT instance map (any integer dtype,
            ids >= 0, 0 background, ids need not be contiguous).
        pred (np.ndarray): (H, W) predicted instance map.

    Returns:
        float: AJI in [0, 1]; NaN if both maps are empty, 0 if only one is.
    """
    return aji_from_overlaps(pairwise_overlaps(true, pred))


def aji_plus(true: np.ndarray, pred: np.ndarray) -> float:
    """AJI+: AJI with a unique (one-to-one) pairing.

    Pairs are the maximum-total-IoU one-to-one assignment (Hungarian) kept
    where IoU > 0; unpaired instances are added to the union as in AJI.

    Args:
        true (np.ndarray): (H, W) GT instance map.
        pred (np.ndarray): (H, W) predicted instance map.

    Returns:
        float: AJI+ in [0, 1]; NaN if both maps are empty, 0 if only one is.
    """
    return aji_plus_from_overlaps(pairwise_overlaps(true, pred))


def pq(true: np.ndarray, pred: np.ndarray, match_iou: float = 0.5) -> PQResult:
    """Panoptic quality (DQ, SQ, PQ) of one image, HoVer-Net style.

    With ``match_iou >= 0.5`` the matches are all pairs with IoU strictly
    above ``match_iou`` (unique by construction); below 0.5 a maximum-IoU
    one-to-one assignment is made first and then thresholded. Then
    DQ = TP / (TP + FP/2 + FN/2), SQ = sum(IoU of matches) / TP (0 without
    matches) and PQ = DQ * SQ. The measure is symmetric in (true, pred).

    Args:
        true (np.ndarray): (H, W) GT instance map.
        pred (np.ndarray): (H, W) predicted instance map.
        match_iou (float): IoU threshold. Defaults to 0.5.

    Returns:
        PQResult: dq, sq, pq (NaN if both maps are empty) and the pairing
        (ids as in the input maps).
    """
    return pq_from_overlaps(pairwise_overlaps(true, pred), match_iou)


def instance_metrics(true: np.ndarray,
                     pred: np.ndarray,
                     match_iou: float = 0.5) -> Dict[str, float]:
    """AJI, AJI+, DQ, SQ and PQ of one image from a single overlap count.

    Args:
        true (np.ndarray): (H, W) GT instance map.
        pred (np.ndarray): (H, W) predicted instance map.
        match_iou (float): PQ IoU threshold. Defaults to 0.5.

    Returns:
        dict[str, float]: keys 'aji', 'aji_plus', 'dq', 'sq', 'pq'.
    """
    ov = pairwise_overlaps(true, pred)
    res = pq_from_overlaps(ov, match_iou)
    return dict(aji=aji_from_overlaps(ov),
                aji_plus=aji_plus_from_overlaps(ov),
                dq=res.dq,
                sq=res.sq,
                pq=res.pq)
