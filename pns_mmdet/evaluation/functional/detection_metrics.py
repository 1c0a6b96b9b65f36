"""Detection and classification scores of matched nucleus points.

Two per-class scores exist and are easy to confuse:

* **per-class detection F1** (:func:`detection_scores` applied per class;
  upstream PromptNucSeg's prompter "Cls" row and the paper's Tab. 2): for
  class c, predictions of class c are matched to GT points of class c only;
  P_c = TP_c / #pred_c, R_c = TP_c / #GT_c, F1_c = 2 TP_c / (#pred_c +
  #GT_c). A detection whose class is wrong counts as an FP of its class and
  an FN of the GT's class.
* **HoVer-Net type F1** (:func:`type_f1_scores`, ``compute_stats.py``
  ``run_nuclei_type_stat``): the class-agnostic pairs are split by class,
  F_c = 2 (TP_c + TN_c) / (2 (TP_c + TN_c) + w0 FP_c + w1 FN_c + w2 FP_d +
  w3 FN_d), w = (2, 2, 1, 1), where among the pairs involving class c
  TP_c = both c, FP_c = pred c / GT other, FN_c = GT c / pred other, TN_c =
  neither c (always 0 there, exactly as in HoVer-Net's code), and FP_d / FN_d
  are the unpaired predictions / GT points of class c.

Zero-denominator convention (same as the instance metrics): a score is NaN
when there are neither predictions nor GT; otherwise a zero denominator
gives 0 (e.g. precision with no predictions but some GT).
"""
from typing import Dict, Sequence, Tuple, Union

import numpy as np

from .point_matching import PointPairing

__all__ = ['detection_scores', 'type_counts', 'type_f1_scores']

ArrayOrFloat = Union[float, np.ndarray]


def _ratio(num: np.ndarray, den: np.ndarray,
           undefined: np.ndarray) -> np.ndarray:
    out = np.divide(num, den, out=np.zeros(num.shape), where=den > 0)
    out[undefined] = np.nan
    return out


def detection_scores(
        tp: ArrayOrFloat, num_pred: ArrayOrFloat, num_true: ArrayOrFloat
) -> Tuple[ArrayOrFloat, ArrayOrFloat, ArrayOrFloat]:
    """Precision, recall and F1 from (summed) counts.

    Args:
        tp (float | np.ndarray): Matched pairs (scalar or per class).
        num_pred (float | np.ndarray): Number of predictions.
        num_true (float | np.ndarray): Number of GT points.

    Returns:
        tuple: precision = TP / #pred, recall = TP / #GT,
        F1 = 2 TP / (#pred + #GT); NaN where #pred = #GT = 0, 0 where only
        the denominator of that score is 0. Scalars in, floats out.
    """
    scalar = np.ndim(tp) == 0
    tp = np.atleast_1d(np.asarray(tp, np.float64))
    num_pred = np.atleast_1d(np.asarray(num_pred, np.float64))
    num_true = np.atleast_1d(np.asarray(num_true, np.float64))
    if np.any(tp > np.minimum(num_pred, num_true)):
        raise ValueError('tp cannot exceed the number of predictions or GT '
                         f'(tp={tp}, num_pred={num_pred}, '
                         f'num_true={num_true})')
    undefined = (num_pred == 0) & (num_true == 0)
    precision = _ratio(tp, num_pred, undefined)
    recall = _ratio(tp, num_true, undefined)
    f1 = _ratio(2 * tp, num_pred + num_true, undefined)
    if scalar:
        return float(precision[0]), float(recall[0]), float(f1[0])
    return precision, recall, f1


def type_counts(pairing: PointPairing, true_labels: np.ndarray,
                pred_labels: np.ndarray,
                num_classes: int) -> Dict[str, np.ndarray]:
    """Per-class counts behind HoVer-Net's type F1 for one image.

    Args:
        pairing (PointPairing): Class-agnostic pairing of the points.
        true_labels (np.ndarray): (N,) GT classes in 0..C-1.
        pred_labels (np.ndarray): (M,) predicted classes in 0..C-1.
        num_classes (int): C.

    Returns:
        dict[str, np.ndarray]: (C,) int64 arrays 'tp_dt', 'fp_dt', 'fn_dt',
        'fp_d', 'fn_d' (see module docstring), and 'correct' / 'paired'
        (scalars as 0-d arrays) for the type accuracy.
    """
    true_labels = np.asarray(true_labels, np.int64).reshape(-1)
    pred_labels = np.asarray(pred_labels, np.int64).reshape(-1)
    pt = true_labels[pairing.pairs[:, 0]]
    pp = pred_labels[pairing.pairs[:, 1]]

    def count(labels: np.ndarray) -> np.ndarray:
        return np.bincount(labels, minlength=num_classes)[:num_classes]

    return dict(tp_dt=count(pt[pt == pp]),
                fp_dt=count(pp[pt != pp]),
                fn_dt=count(pt[pt != pp]),
                fp_d=count(pred_labels[pairing.unpaired_pred]),
                fn_d=count(true_labels[pairing.unpaired_true]),
                correct=np.asarray((pt == pp).sum(), np.int64),
                paired=np.asarray(pt.size, np.int64))


def type_f1_scores(
    counts: Dict[str, np.ndarray], weights: Sequence[float] = (2, 2, 1, 1)
) -> Tuple[float, np.ndarray]:
    """HoVer-Net type accuracy and per-class type F1 from summed counts.

    Args:
        counts (dict[str, np.ndarray]): Output of :func:`type_counts`,
            summed over the images of a dataset.
        weights (Sequence[float]): (w0, w1, w2, w3) for FP_c, FN_c, FP_d,
            FN_d. Defaults to (2, 2, 1, 1), HoVer-Net's values.

    Returns:
        tuple[float, np.ndarray]: type accuracy (correct / paired, NaN
        without pairs) and (C,) F_c (NaN where the denominator is 0, i.e.
        the class occurs nowhere).
    """
    w0, w1, w2, w3 = weights
    tp = counts['tp_dt'].astype(np.float64)
    den = (2 * tp + w0 * counts['fp_dt'] + w1 * counts['fn_dt'] +
           w2 * counts['fp_d'] + w3 * counts['fn_d'])
    f1 = _ratio(2 * tp, den, den == 0)
    paired = float(counts['paired'])
    acc = float(counts['correct']) / paired if paired else float('nan')
    return acc, f1
