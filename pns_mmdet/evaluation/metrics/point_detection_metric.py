"""Nucleus point detection / classification metric for the prompter."""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from terminaltables import AsciiTable

from ..functional import (detection_scores, greedy_point_matching, nanmean,
                          pair_coordinates, type_counts, type_f1_scores)
from ..functional.point_matching import PointPairing

__all__ = ['PointDetectionMetric']

_TYPE_KEYS = ('tp_dt', 'fp_dt', 'fn_dt', 'fp_d', 'fn_d', 'correct', 'paired')


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


@METRICS.register_module()
class PointDetectionMetric(BaseMetric):
    """Detection and classification of predicted nucleus points.

    Predicted points (``pred_instances.points``, ``labels``, ``scores``) are
    matched to GT points (``gt_instances.points``, ``labels``) within
    ``radius`` pixels. TP, #pred and #GT are summed over the dataset before
    computing the scores, as HoVer-Net and upstream PromptNucSeg do.

    Reported keys (fractions in [0, 1]; NaN when undefined):

    * ``precision``, ``recall``, ``f1``: class-agnostic detection.
    * ``precision_<c>``, ``recall_<c>``, ``f1_<c>``: per-class detection
      (predictions of class c matched to GT of class c only; the paper's
      Tab. 2 and upstream's prompter evaluation), and ``cls_precision``,
      ``cls_recall``, ``cls_f1``: their means over classes (classes with
      neither GT nor predictions in the whole dataset are skipped; upstream
      would count them as 0). With one class these equal the detection
      scores.
    * with more than one class, HoVer-Net's ``type_acc`` (class accuracy of
      the class-agnostic pairs), ``type_f1_<c>`` (F_c with weights
      ``type_f1_weights``) and ``type_f1`` (their mean).

    GT points are expected in the same frame as the predictions (original
    image). If the sample's ``scale_factor`` is not 1 (a Resize in the test
    pipeline), GT points are divided by it to return to that frame.

    Args:
        radius (float): Matching radius in pixels (inclusive). Defaults to
            12 (HoVer-Net / upstream, ~3 um at 40x).
        matcher (str): 'hungarian' (HoVer-Net ``pair_coordinates``: global
            Hungarian on distances, then the radius cut) or 'greedy'
            (upstream PromptNucSeg: by descending score, nearest free GT).
            Defaults to 'hungarian'.
        type_f1_weights (Sequence[float]): HoVer-Net F_c weights for FP_c,
            FN_c, FP_d, FN_d. Defaults to (2, 2, 1, 1).
        collect_device (str): 'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): Key prefix. Defaults to 'points'.
        collect_dir (str, optional): Directory for collecting results
            across ranks on CPU. Defaults to None.
    """
    default_prefix: Optional[str] = 'points'

    def __init__(self,
                 radius: float = 12.0,
                 matcher: str = 'hungarian',
                 type_f1_weights: Sequence[float] = (2, 2, 1, 1),
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device,
                         prefix=prefix,
                         collect_dir=collect_dir)
        if radius <= 0:
            raise ValueError(f'radius must be > 0, got {radius}')
        if matcher not in ('hungarian', 'greedy'):
            raise ValueError(f"matcher must be 'hungarian' or 'greedy', got "
                             f'{matcher!r}')
        if len(type_f1_weights) != 4:
            raise ValueError('type_f1_weights needs 4 values, got '
                             f'{type_f1_weights}')
        self.radius = float(radius)
        self.matcher = matcher
        self.type_f1_weights = tuple(type_f1_weights)

    def _class_names(self) -> Tuple[str, ...]:
        classes = (self.dataset_meta or {}).get('classes')
        return tuple(classes) if classes else ('nucleus', )

    def _match(self, gt_points: np.ndarray, pred_points: np.ndarray,
               pred_scores: np.ndarray) -> PointPairing:
        if self.matcher == 'hungarian':
            return pair_coordinates(gt_points, pred_points, self.radius)
        return greedy_point_matching(gt_points, pred_points, pred_scores,
                                     self.radius)

    @staticmethod
    def _points(
            inst: dict,
            where: str,
            scale: Optional[np.ndarray] = None
    ) -> Tuple[np.ndarray, np.ndarray]:
        if inst is None or 'points' not in inst:
            raise KeyError(f'{where}: no points field')
        points = _to_numpy(inst['points']).astype(np.float64)
        points = points.reshape(-1, 2) if points.size else np.zeros((0, 2))
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f'{where}.points: expected (N, 2), got '
                             f'{points.shape}')
        if scale is not None:
            points = points / scale
        labels = inst.get('labels')
        labels = (np.zeros(len(points), np.int64) if labels is None else
                  _to_numpy(labels).astype(np.int64).reshape(-1))
        if labels.shape != (len(points), ):
            raise ValueError(f'{where}: {len(points)} points but labels of '
                             f'shape {labels.shape}')
        return points, labels

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Match the points of every image and store the counts.

        Args:
            data_batch (Any): Unused.
            data_samples (Sequence[dict]): Model outputs as dicts with
                ``gt_instances`` and ``pred_instances``.
        """
        num_classes = len(self._class_names())
        for sample in data_samples:
            where = f"image {sample.get('img_path', sample.get('img_id'))}"
            scale = sample.get('scale_factor')
            scale = (None if scale is None or np.allclose(scale, 1) else
                     np.asarray(scale, np.float64).reshape(2))
            gt_pts, gt_lbl = self._points(sample.get('gt_instances'),
                                          f'{where} gt_instances', scale)
            pred = sample.get('pred_instances')
            pr_pts, pr_lbl = self._points(pred, f'{where} pred_instances')
            scores = pred.get('scores')
            scores = (np.zeros(len(pr_pts)) if scores is None else
                      _to_numpy(scores).astype(np.float64).reshape(-1))
            for name, lbl in (('gt', gt_lbl), ('pred', pr_lbl)):
                if lbl.size and (lbl.min() < 0 or lbl.max() >= num_classes):
                    raise ValueError(
                        f'{where}: {name} labels must be in 0..'
                        f'{num_classes - 1}, got {np.unique(lbl).tolist()}')
            pairing = self._match(gt_pts, pr_pts, scores)
            cls_tp = np.zeros(num_classes, np.int64)
            for c in range(num_classes):
                g, p = gt_lbl == c, pr_lbl == c
                if g.any() and p.any():
                    cls_tp[c] = self._match(gt_pts[g], pr_pts[p], scores[p]).tp
            stats = dict(tp=pairing.tp,
                         num_pred=len(pr_pts),
                         num_gt=len(gt_pts),
                         cls_tp=cls_tp,
                         cls_num_pred=np.bincount(pr_lbl,
                                                  minlength=num_classes),
                         cls_num_gt=np.bincount(gt_lbl, minlength=num_classes))
            if num_classes > 1:
                stats.update(type_counts(pairing, gt_lbl, pr_lbl, num_classes))
            self.results.append(stats)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Scores from the dataset-summed counts.

        Args:
            results (list[dict]): Per-image counts from all ranks.

        Returns:
            dict[str, float]: see the class docstring.
        """
        names = self._class_names()

        def total(key: str) -> np.ndarray:
            return np.sum([r[key] for r in results], axis=0) if results \
                else np.zeros(len(names) if key.startswith('cls') else ())

        p, r, f1 = detection_scores(total('tp'), total('num_pred'),
                                    total('num_gt'))
        cp, cr, cf1 = detection_scores(total('cls_tp'), total('cls_num_pred'),
                                       total('cls_num_gt'))
        out = dict(precision=p, recall=r, f1=f1)
        out.update(cls_precision=nanmean(cp),
                   cls_recall=nanmean(cr),
                   cls_f1=nanmean(cf1))
        for i, name in enumerate(names):
            out[f'precision_{name}'] = float(cp[i])
            out[f'recall_{name}'] = float(cr[i])
            out[f'f1_{name}'] = float(cf1[i])
        type_f1 = None
        if len(names) > 1 and results:
            acc, type_f1 = type_f1_scores({k: total(k)
                                           for k in _TYPE_KEYS},
                                          self.type_f1_weights)
            out['type_acc'] = acc
            out['type_f1'] = nanmean(type_f1)
            for i, name in enumerate(names):
                out[f'type_f1_{name}'] = float(type_f1[i])
        self._log_table(out, names, cp, cr, cf1, type_f1)
        return {k: float(v) for k, v in out.items()}

    def _log_table(self, out: dict, names: Sequence[str], cp: np.ndarray,
                   cr: np.ndarray, cf1: np.ndarray,
                   type_f1: Optional[np.ndarray]) -> None:
        head = ['class', 'P', 'R', 'F1'
                ] + (['type F1'] if type_f1 is not None else [])
        rows = [head]
        for i, name in enumerate(names):
            row = [name, f'{cp[i]:.4f}', f'{cr[i]:.4f}', f'{cf1[i]:.4f}']
            if type_f1 is not None:
                row.append(f'{type_f1[i]:.4f}')
            rows.append(row)
        det = [
            'detection', f"{out['precision']:.4f}", f"{out['recall']:.4f}",
            f"{out['f1']:.4f}"
        ]
        cls = [
            'class mean', f"{out['cls_precision']:.4f}",
            f"{out['cls_recall']:.4f}", f"{out['cls_f1']:.4f}"
        ]
        if type_f1 is not None:
            det.append(f"acc {out['type_acc']:.4f}")
            cls.append(f"{out['type_f1']:.4f}")
        rows += [det, cls]
        print_log(
            f'\nPoint matching: {self.matcher}, radius {self.radius:g} px\n' +
            AsciiTable(rows).table,
            logger='current')
