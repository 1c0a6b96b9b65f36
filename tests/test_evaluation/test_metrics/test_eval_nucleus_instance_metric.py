import numpy as np
import pytest
import torch
from mmdet.registry import METRICS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData, PixelData

import pns_mmdet  # noqa: F401  (registers the metrics)

# Case A of the functional tests: GT nuclei 1, 2 matched with IoU 2/3,
# GT 3 missed. bPQ = 8/15, AJI = 4/7.
TRUE = np.array([[1, 1, 1, 0, 2, 2],
                 [1, 1, 1, 0, 2, 2],
                 [0, 0, 0, 0, 0, 0],
                 [3, 3, 0, 0, 0, 0]])
PRED = np.array([[1, 1, 0, 0, 2, 2],
                 [1, 1, 0, 0, 2, 2],
                 [0, 0, 0, 0, 2, 2],
                 [0, 0, 0, 0, 0, 0]])
CLASSES = ('Neoplastic', 'Inflammatory')


def _masks(inst):
    ids = [i for i in np.unique(inst) if i]
    return np.stack([inst == i for i in ids]) if ids else np.zeros(
        (0, ) + inst.shape, bool)


def _sample(true, true_labels, pred=None, pred_labels=None, scores=None,
            tissue=None, inst_map=None, class_map=None, img_id=0):
    """A DetDataSample as the model returns it, converted like mmengine."""
    ds = DetDataSample(metainfo=dict(img_id=img_id, tissue=tissue,
                                     ori_shape=true.shape))
    ds.gt_instances = InstanceData(
        masks=BitmapMasks(_masks(true).astype(np.uint8), *true.shape),
        labels=torch.tensor(true_labels, dtype=torch.long))
    if pred is not None:
        masks = torch.from_numpy(_masks(pred))
        n = len(masks)
        ds.pred_instances = InstanceData(
            masks=masks,
            labels=torch.tensor(pred_labels, dtype=torch.long),
            scores=torch.tensor(scores if scores is not None else [1.] * n))
    if inst_map is not None:
        ds.pred_inst_map = PixelData(
            sem_seg=torch.from_numpy(inst_map[None].astype(np.int32)))
    if class_map is not None:
        ds.pred_class_map = PixelData(
            sem_seg=torch.from_numpy(class_map[None].astype(np.int32)))
    return ds.to_dict()


def _evaluate(metric, samples):
    metric.process({}, samples)
    return metric.evaluate(len(samples))


def test_pannuke_protocol_with_tissues_and_nans():
    metric = METRICS.build(dict(type='NucleusInstanceMetric'))
    metric.dataset_meta = dict(classes=CLASSES)
    empty = np.zeros_like(TRUE)
    one_fp = np.zeros_like(TRUE)
    one_fp[0, :2] = 1
    samples = [
        # GT classes 0, 1, 0; predictions both class 0 -> class 0 PQ 1/3,
        # class 1 PQ 0 -> mPQ 1/6; bPQ 8/15
        _sample(TRUE, [0, 1, 0], PRED, [0, 0], tissue='Breast'),
        # empty GT with one false positive: bPQ and class PQ NaN
        _sample(empty, [], one_fp, [1], tissue='Colon', img_id=1),
        # perfect prediction: bPQ 1, mPQ 1
        _sample(TRUE, [0, 1, 0], TRUE, [0, 1, 0], tissue='Colon', img_id=2),
    ]
    res = _evaluate(metric, samples)
    # tissue means: Breast (8/15, 1/6), Colon (nanmean(NaN, 1) = 1, 1)
    assert res['nuclei/bpq'] == pytest.approx((8 / 15 + 1) / 2)
    assert res['nuclei/mpq'] == pytest.approx((1 / 6 + 1) / 2)
    assert res['nuclei/pq_Neoplastic'] == pytest.approx((1 / 3 + 1) / 2)
    assert res['nuclei/pq_Inflammatory'] == pytest.approx(0.5)
    # per-image means: the FP-only image scores 0
    assert res['nuclei/aji'] == pytest.approx((4 / 7 + 0 + 1) / 3)
    assert res['nuclei/pq'] == pytest.approx((8 / 15 + 0 + 1) / 3)
    assert res['nuclei/dq'] == pytest.approx((0.8 + 0 + 1) / 3)
    assert set(res) == {
        'nuclei/' + k
        for k in ('aji', 'aji_plus', 'dq', 'sq', 'pq', 'bpq', 'mpq',
                  'pq_Neoplastic', 'pq_Inflammatory')
    }


def test_single_class_is_kumar_protocol_and_no_tissue():
    metric = METRICS.build(dict(type='NucleusInstanceMetric'))
    metric.dataset_meta = dict(classes=('nucleus', ))
    res = _evaluate(metric, [_sample(TRUE, [0, 0, 0], PRED, [0, 0])])
    assert res == pytest.approx({
        'nuclei/aji': 4 / 7,
        'nuclei/aji_plus': 4 / 7,
        'nuclei/dq': 0.8,
        'nuclei/sq': 2 / 3,
        'nuclei/pq': 8 / 15
    })
    # classwise forced on with one class and no tissue: one group
    metric = METRICS.build(dict(type='NucleusInstanceMetric', classwise=True))
    metric.dataset_meta = dict(classes=('nucleus', ))
    res = _evaluate(metric, [_sample(TRUE, [0, 0, 0], PRED, [0, 0])])
    assert res['nuclei/mpq'] == pytest.approx(8 / 15)
    assert res['nuclei/bpq'] == pytest.approx(8 / 15)


def test_pred_inst_map_path_and_both_empty_image():
    metric = METRICS.build(dict(type='NucleusInstanceMetric'))
    metric.dataset_meta = dict(classes=CLASSES)
    empty = np.zeros_like(TRUE)
    cls_map = np.where(PRED > 0, 1, 0)  # both predictions class index 0
    samples = [
        _sample(TRUE, [0, 1, 0], inst_map=PRED * 5, class_map=cls_map),
        # nothing to find, nothing found: every metric NaN -> skipped
        _sample(empty, [], inst_map=empty, class_map=empty, img_id=1),
    ]
    res = _evaluate(metric, samples)
    assert res['nuclei/pq'] == pytest.approx(8 / 15)
    assert res['nuclei/mpq'] == pytest.approx(1 / 6)


def test_highest_score_wins_overlaps():
    metric = METRICS.build(dict(type='NucleusInstanceMetric'))
    true = np.zeros((4, 4), int)
    true[:, :2] = 1
    # two overlapping predictions; B exactly covers GT but A covers all.
    a = np.ones((4, 4), bool)
    b = true.astype(bool)
    samples = []
    for scores in ([0.9, 0.1], [0.1, 0.9]):
        ds = DetDataSample(metainfo=dict(img_id=0))
        ds.gt_instances = InstanceData(
            masks=BitmapMasks(true[None].astype(np.uint8), 4, 4),
            labels=torch.tensor([0]))
        ds.pred_instances = InstanceData(
            masks=torch.from_numpy(np.stack([a, b])),
            labels=torch.tensor([0, 0]),
            scores=torch.tensor(scores))
        samples.append(ds.to_dict())
    metric.process({}, samples[:1])
    # A painted last covers everything: B vanishes; IoU(GT, A) = 1/2
    assert metric.results[0]['pq'] == 0.0
    assert metric.results[0]['aji'] == pytest.approx(0.5)
    metric.process({}, samples[1:])
    # B on top: GT matched exactly; A keeps the right half (FP)
    assert metric.results[1]['sq'] == 1.0
    assert metric.results[1]['dq'] == pytest.approx(2 / 3)


def test_errors_are_clear():
    metric = METRICS.build(dict(type='NucleusInstanceMetric'))
    metric.dataset_meta = dict(classes=('nucleus', ))
    big = np.zeros((8, 6), int)
    big[:2, :2] = 1
    with pytest.raises(ValueError, match=r'\(4, 6\).*\(8, 6\)'):
        metric.process({}, [_sample(TRUE, [0, 0, 0], big, [0])])
    with pytest.raises(KeyError, match='pred_inst_map nor'):
        metric.process({}, [_sample(TRUE, [0, 0, 0])])
    metric = METRICS.build(dict(type='NucleusInstanceMetric'))
    metric.dataset_meta = dict(classes=CLASSES)
    with pytest.raises(KeyError, match='pred_class_map'):
        metric.process({}, [_sample(TRUE, [0, 1, 0], inst_map=PRED)])
    with pytest.raises(ValueError, match='image 0.*1..2'):
        metric.process({}, [_sample(TRUE, [0, 1, 0], PRED, [0, 5])])
    with pytest.raises(ValueError, match='iou_thr'):
        METRICS.build(dict(type='NucleusInstanceMetric', iou_thr=1.5))
    assert metric.results == []  # nothing half-processed is kept


def test_results_hold_numbers_only():
    metric = METRICS.build(dict(type='NucleusInstanceMetric'))
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, [_sample(TRUE, [0, 1, 0], PRED, [0, 0], tissue='x')])
    (stats, ) = metric.results
    for key, value in stats.items():
        assert value is None or isinstance(value, (float, str, int, list)), \
            key
    assert stats['tissue'] == 'x'
    assert stats['class_pq'] == pytest.approx([1 / 3, 0.0])
