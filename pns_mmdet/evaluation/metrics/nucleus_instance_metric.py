"""Nucleus instance-segmentation metric (AJI, AJI+, DQ, SQ, PQ, bPQ, mPQ)."""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.registry import METRICS
from mmdet.structures.mask import BaseInstanceMasks
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from terminaltables import AsciiTable

from ..functional import (INSTANCE_KEYS, image_instance_stats,
                          paint_instance_masks, summarize_instance_stats)

__all__ = ['NucleusInstanceMetric']


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, BaseInstanceMasks):
        # BitmapMasks or PolygonMasks (LoadAnnotations(poly2mask=False))
        return value.to_ndarray()
    return np.asarray(value)


def _masks_array(masks: Any, where: str) -> np.ndarray:
    """(N, H, W) bool array from mmdet masks, a tensor or an ndarray."""
    if masks is None:
        raise KeyError(f'{where}: no masks')
    if isinstance(masks, BaseInstanceMasks) and len(masks) == 0:
        return np.zeros((0, masks.height, masks.width), bool)
    arr = _to_numpy(masks)
    if arr.ndim != 3:
        raise ValueError(f'{where}: expected (N, H, W) masks, got shape '
                         f'{arr.shape}')
    return arr.astype(bool, copy=False)


def _pixel_map(value: Any, where: str) -> np.ndarray:
    """(H, W) int map from PixelData-as-dict {'sem_seg': (1, H, W)} or an
    array/tensor of shape (H, W) or (1, H, W)."""
    if isinstance(value, dict):
        if 'sem_seg' not in value:
            raise KeyError(f"{where}: expected a 'sem_seg' field, found "
                           f'{sorted(value)}')
        value = value['sem_seg']
    elif hasattr(value, 'sem_seg'):
        value = value.sem_seg
    arr = _to_numpy(value)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f'{where}: expected an (H, W) or (1, H, W) map, got '
                         f'shape {arr.shape}')
    if arr.dtype.kind not in 'biu':
        raise ValueError(f'{where}: expected integer ids, got {arr.dtype}')
    return arr


@METRICS.register_module()
class NucleusInstanceMetric(BaseMetric):
    """Nucleus instance-segmentation metric with HoVer-Net definitions.

    Per image it computes AJI, AJI+, DQ, SQ and PQ (see
    :mod:`pns_mmdet.evaluation.functional.instance_metrics`) and reports
    their means over images (Kumar / CPM-17 protocol). With classes it also
    reports bPQ, mPQ (PanNuke protocol: per image, then per tissue, then the
    mean over tissues; the tissue comes from the data sample's ``tissue``
    metainfo) and PQ per class.

    Inputs (dicts, as mmengine passes them): the GT instance map is painted
    from ``gt_instances.masks`` in the given order (later instances
    overwrite earlier ones, as in the dataset's instance maps) with classes
    ``gt_instances.labels``; the prediction is ``pred_inst_map`` (+
    ``pred_class_map``, 1..C) when present, otherwise
    ``pred_instances.masks`` painted in ascending score order (the most
    confident mask wins overlaps) with classes ``pred_instances.labels``.
    Both must be in the same (original image) frame. Only a few numbers per
    image are kept between ``process`` and ``compute_metrics``.

    Args:
        classwise (bool, optional): Report bPQ/mPQ/per-class PQ. Defaults
            to None: on iff ``dataset_meta['classes']`` has > 1 class.
        iou_thr (float): PQ matching IoU threshold (pairs need IoU strictly
            above it). Defaults to 0.5.
        collect_device (str): 'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): Key prefix. Defaults to 'nuclei'.
        collect_dir (str, optional): Directory for collecting results
            across ranks on CPU. Defaults to None.
    """
    default_prefix: Optional[str] = 'nuclei'

    def __init__(self,
                 classwise: Optional[bool] = None,
                 iou_thr: float = 0.5,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device,
                         prefix=prefix,
                         collect_dir=collect_dir)
        if not 0 <= iou_thr < 1:
            raise ValueError(f'iou_thr must be in [0, 1), got {iou_thr}')
        self.classwise = classwise
        self.iou_thr = iou_thr

    def _class_names(self) -> Optional[Tuple[str, ...]]:
        """Class names when class statistics are on, else None."""
        classes = (self.dataset_meta or {}).get('classes')
        if self.classwise is False:
            return None
        if self.classwise is None:
            return tuple(classes) if classes and len(classes) > 1 else None
        if not classes:
            raise ValueError('NucleusInstanceMetric(classwise=True) needs '
                             "dataset_meta['classes'] (set by the runner "
                             'from the dataset, or assign metric.'
                             'dataset_meta)')
        return tuple(classes)

    def _gt_maps(self, sample: dict, where: str,
                 with_cls: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        gt = sample.get('gt_instances')
        if gt is None or 'masks' not in gt:
            raise KeyError(f'{where}: no gt_instances.masks; keep '
                           'LoadAnnotations(with_mask=True) in the test '
                           'pipeline')
        masks = _masks_array(gt['masks'], f'{where} gt_instances.masks')
        labels = None
        if with_cls:
            if 'labels' not in gt:
                raise KeyError(f'{where}: gt_instances.labels needed for '
                               'class statistics')
            labels = _to_numpy(gt['labels']).astype(np.int64).reshape(-1)
        return self._paint(masks, None, labels, where + ' gt_instances')

    def _pred_maps(self, sample: dict, where: str,
                   with_cls: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        if sample.get('pred_inst_map') is not None:
            inst = _pixel_map(sample['pred_inst_map'], f'{where} '
                              'pred_inst_map')
            cls = None
            if with_cls:
                if sample.get('pred_class_map') is None:
                    raise KeyError(f'{where}: pred_inst_map without '
                                   'pred_class_map; class statistics need '
                                   'both')
                cls = _pixel_map(sample['pred_class_map'],
                                 f'{where} pred_class_map')
            return inst, cls
        pred = sample.get('pred_instances')
        if pred is None or 'masks' not in pred:
            raise KeyError(f'{where}: neither pred_inst_map nor '
                           'pred_instances.masks in the prediction')
        masks = _masks_array(pred['masks'], f'{where} pred_instances.masks')
        scores = pred.get('scores')
        scores = (np.zeros(len(masks)) if scores is None else
                  _to_numpy(scores).astype(np.float64).reshape(-1))
        if scores.shape != (len(masks), ):
            raise ValueError(f'{where}: {len(masks)} pred masks but scores '
                             f'of shape {scores.shape}')
        labels = None
        if with_cls:
            if 'labels' not in pred:
                raise KeyError(f'{where}: pred_instances.labels needed for '
                               'class statistics')
            labels = _to_numpy(pred['labels']).astype(np.int64).reshape(-1)
        # ascending score: the most confident mask is painted last and wins
        order = np.argsort(scores, kind='stable')
        return self._paint(masks, order, labels, where + ' pred_instances')

    @staticmethod
    def _paint(masks: np.ndarray, order: Optional[np.ndarray],
               labels: Optional[np.ndarray],
               where: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        if labels is None:
            return paint_instance_masks(masks, order), None
        if labels.shape != (len(masks), ):
            raise ValueError(f'{where}: {len(masks)} masks but labels of '
                             f'shape {labels.shape}')
        return paint_instance_masks(masks, order, labels)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Compute and store the statistics of every image of a batch.

        Args:
            data_batch (Any): Unused.
            data_samples (Sequence[dict]): Model outputs as dicts, holding
                ``gt_instances`` and ``pred_instances`` / ``pred_inst_map``.
        """
        class_names = self._class_names()
        with_cls = class_names is not None
        for sample in data_samples:
            where = (f"image {sample.get('img_path', sample.get('img_id'))}")
            gt_inst, gt_cls = self._gt_maps(sample, where, with_cls)
            pred_inst, pred_cls = self._pred_maps(sample, where, with_cls)
            if gt_inst.shape != pred_inst.shape or (with_cls and pred_cls.shape
                                                    != pred_inst.shape):
                raise ValueError(
                    f'{where}: GT masks are {gt_inst.shape} but the '
                    f'prediction is {pred_inst.shape}' +
                    ('' if not with_cls else f' (class map {pred_cls.shape})'
                     ) + '; both must be in the original image frame (predict '
                    'with rescale=True, no Resize of GT in the test '
                    'pipeline)')
            try:
                stats = image_instance_stats(
                    gt_inst,
                    pred_inst,
                    gt_cls,
                    pred_cls,
                    num_classes=len(class_names) if with_cls else 0,
                    match_iou=self.iou_thr)
            except ValueError as e:
                raise ValueError(f'{where}: {e}') from e
            stats['img_id'] = sample.get('img_id')
            stats['tissue'] = sample.get('tissue')
            self.results.append(stats)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Average the per-image statistics (PanNuke protocol with classes).

        Args:
            results (list[dict]): Per-image statistics from all ranks.

        Returns:
            dict[str, float]: 'aji', 'aji_plus', 'dq', 'sq', 'pq', and with
            classes 'bpq', 'mpq' and 'pq_<class name>' (NaN when undefined,
            e.g. no image has GT of that class).
        """
        class_names = self._class_names()
        with_cls = class_names is not None and bool(results) and \
            'class_pq' in results[0]
        summary = summarize_instance_stats(results,
                                           class_names if with_cls else None,
                                           [r.get('tissue') for r in results])
        per_tissue = summary.pop('per_tissue', None)
        num_images = summary.pop('num_images')
        self._log_tables(summary, per_tissue, num_images)
        return {k: float(v) for k, v in summary.items()}

    def _log_tables(self, summary: Dict[str, float],
                    per_tissue: Optional[Dict[str,
                                              dict]], num_images: int) -> None:
        head = list(INSTANCE_KEYS)
        rows = [['images'] + head,
                [str(num_images)] + [f'{summary[k]:.4f}' for k in head]]
        print_log('\n' + AsciiTable(rows).table, logger='current')
        if per_tissue is None:
            return
        rows = [['tissue', 'images', 'bPQ', 'mPQ']]
        for tissue, v in per_tissue.items():
            rows.append([
                tissue,
                str(v['num_images']), f"{v['bpq']:.4f}", f"{v['mpq']:.4f}"
            ])
        rows.append([
            'mean over tissues',
            str(num_images), f"{summary['bpq']:.4f}", f"{summary['mpq']:.4f}"
        ])
        print_log('\n' + AsciiTable(rows).table, logger='current')
        class_rows = [['class', 'PQ']] + [[k[3:], f'{v:.4f}']
                                          for k, v in summary.items()
                                          if k.startswith('pq_')]
        print_log('\n' + AsciiTable(class_rows).table, logger='current')
