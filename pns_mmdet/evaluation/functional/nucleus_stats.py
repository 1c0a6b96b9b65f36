"""Per-image nucleus statistics and their dataset summary.

The summary implements two protocols:

* Kumar / CPM-17 (HoVer-Net ``run_nuclei_inst_stat``, PromptNucSeg): AJI,
  AJI+, DQ, SQ, PQ are computed per image and averaged over images (images
  with both maps empty are NaN and skipped).
* PanNuke (official ``PanNuke-metrics/run.py``, PromptNucSeg): per image,
  bPQ = PQ of the class-agnostic maps (NaN if the GT has no nucleus) and
  PQ_c per class c on the instances of class c only (NaN if the GT has no
  class-c nucleus, so false positives of a class absent from an image's GT
  are not penalised); mPQ_i = nanmean_c PQ_c. bPQ and mPQ are averaged per
  tissue (nanmean over that tissue's images) and then over tissues (equal
  weight per tissue; images without a tissue form one group). Per-class PQ
  is the nanmean of PQ_c over all images.
"""
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np

from .instance_map import instance_classes
from .instance_metrics import (aji_from_overlaps, aji_plus_from_overlaps,
                               pq_from_overlaps)
from .overlaps import pairwise_overlaps

__all__ = [
    'image_instance_stats', 'summarize_instance_stats', 'nanmean',
    'INSTANCE_KEYS'
]

INSTANCE_KEYS = ('aji', 'aji_plus', 'dq', 'sq', 'pq')


def nanmean(values: Sequence[float]) -> float:
    """Mean ignoring NaN; NaN (without a warning) if nothing is left."""
    arr = np.asarray(values, np.float64).reshape(-1)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else float('nan')


def _classes_of(ids: np.ndarray, inst_map: np.ndarray, class_map: np.ndarray,
                num_classes: int, name: str) -> np.ndarray:
    # same id order as the overlaps: both list the sorted positive ids
    _, classes = instance_classes(inst_map, class_map)
    if classes.size and (classes.min() < 1 or classes.max() > num_classes):
        bad = ids[(classes < 1) | (classes > num_classes)]
        raise ValueError(
            f'{name}: every instance needs a class in 1..{num_classes} in '
            f'the class map; instances {bad[:10].tolist()} have '
            f'{np.unique(classes[(classes < 1) | (classes > num_classes)])}')
    return classes


def image_instance_stats(true_inst: np.ndarray,
                         pred_inst: np.ndarray,
                         true_cls: Optional[np.ndarray] = None,
                         pred_cls: Optional[np.ndarray] = None,
                         num_classes: int = 0,
                         match_iou: float = 0.5) -> Dict[str, object]:
    """All instance statistics of one image, from one overlap count.

    Args:
        true_inst (np.ndarray): (H, W) GT instance map.
        pred_inst (np.ndarray): (H, W) predicted instance map.
        true_cls (np.ndarray, optional): (H, W) GT class map, classes
            1..C, 0 background; an instance's class is the majority value
            over its pixels. Required when ``num_classes > 0``.
        pred_cls (np.ndarray, optional): (H, W) predicted class map.
        num_classes (int): C; 0 disables the class statistics. Defaults
            to 0.
        match_iou (float): PQ IoU threshold. Defaults to 0.5.

    Returns:
        dict: 'aji', 'aji_plus', 'dq', 'sq', 'pq' (floats, NaN if both maps
        are empty); with classes also 'bpq' (float, NaN if the GT is empty)
        and 'class_pq' (list of C floats, NaN where the GT lacks the class).
    """
    ov = pairwise_overlaps(true_inst, pred_inst)
    res = pq_from_overlaps(ov, match_iou)
    stats: Dict[str, object] = dict(aji=aji_from_overlaps(ov),
                                    aji_plus=aji_plus_from_overlaps(ov),
                                    dq=res.dq,
                                    sq=res.sq,
                                    pq=res.pq)
    if num_classes <= 0:
        return stats
    if true_cls is None or pred_cls is None:
        raise ValueError('class statistics need both true_cls and pred_cls '
                         'class maps')
    t_cls = _classes_of(ov.true_ids, true_inst, true_cls, num_classes,
                        'true_cls')
    p_cls = _classes_of(ov.pred_ids, pred_inst, pred_cls, num_classes,
                        'pred_cls')
    stats['bpq'] = res.pq if ov.num_true else float('nan')
    class_pq = []
    for c in range(1, num_classes + 1):
        t_keep = t_cls == c
        if not t_keep.any():
            class_pq.append(float('nan'))
            continue
        class_pq.append(pq_from_overlaps(ov, match_iou, t_keep, p_cls == c).pq)
    stats['class_pq'] = class_pq
    return stats


def summarize_instance_stats(
        stats: List[Dict[str, object]],
        class_names: Optional[Sequence[str]] = None,
        tissues: Optional[Sequence[Optional[str]]] = None) -> 'OrderedDict':
    """Dataset-level numbers from per-image :func:`image_instance_stats`.

    Args:
        stats (list[dict]): One dict per image.
        class_names (Sequence[str], optional): Names of the C classes; when
            given (and the stats hold 'class_pq') the PanNuke numbers are
            added. Defaults to None.
        tissues (Sequence[str | None], optional): Tissue of every image;
            None or missing puts all images in one group. Defaults to None.

    Returns:
        OrderedDict: 'aji', 'aji_plus', 'dq', 'sq', 'pq' (nanmean over
        images), 'num_images'; with classes also 'bpq', 'mpq' (tissue
        protocol), 'pq_<class>' per class, and 'per_tissue' (an OrderedDict
        tissue -> dict(bpq=, mpq=, num_images=)).
    """
    out: 'OrderedDict' = OrderedDict()
    for key in INSTANCE_KEYS:
        out[key] = nanmean([s[key] for s in stats])
    out['num_images'] = len(stats)
    if not class_names or not stats or 'class_pq' not in stats[0]:
        return out
    num_classes = len(class_names)
    class_pq = np.array([s['class_pq'] for s in stats], np.float64)
    if class_pq.shape != (len(stats), num_classes):
        raise ValueError(f'class_pq of shape {class_pq.shape} does not match '
                         f'{num_classes} class names')
    bpq = np.array([s['bpq'] for s in stats], np.float64)
    mpq_img = np.array([nanmean(row) for row in class_pq])
    if tissues is None:
        tissues = [None] * len(stats)
    if len(tissues) != len(stats):
        raise ValueError(f'{len(tissues)} tissues for {len(stats)} images')
    groups: 'OrderedDict' = OrderedDict()
    for i, tissue in enumerate(tissues):
        groups.setdefault('all' if tissue is None else str(tissue),
                          []).append(i)
    per_tissue: 'OrderedDict' = OrderedDict()
    for tissue in sorted(groups):
        idx = groups[tissue]
        per_tissue[tissue] = dict(bpq=nanmean(bpq[idx]),
                                  mpq=nanmean(mpq_img[idx]),
                                  num_images=len(idx))
    out['bpq'] = nanmean([v['bpq'] for v in per_tissue.values()])
    out['mpq'] = nanmean([v['mpq'] for v in per_tissue.values()])
    for c, name in enumerate(class_names):
        out[f'pq_{name}'] = nanmean(class_pq[:, c])
    out['per_tissue'] = per_tissue
    return out
