import math

import pytest
import torch
from mmdet.registry import METRICS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

import pns_mmdet  # noqa: F401  (registers the metrics)

CLASSES = ('Neoplastic', 'Inflammatory')


def _sample(gt_pts, gt_lbl, pr_pts, pr_lbl, pr_scores, img_id=0, **meta):
    ds = DetDataSample(metainfo=dict(img_id=img_id, **meta))
    ds.gt_instances = InstanceData(
        points=torch.tensor(gt_pts, dtype=torch.float32).reshape(-1, 2),
        labels=torch.tensor(gt_lbl, dtype=torch.long))
    ds.pred_instances = InstanceData(
        points=torch.tensor(pr_pts, dtype=torch.float32).reshape(-1, 2),
        labels=torch.tensor(pr_lbl, dtype=torch.long),
        scores=torch.tensor(pr_scores, dtype=torch.float32))
    return ds.to_dict()


def _two_images(scale=1.0):
    s = scale
    return [
        # GT: c0 at (10, 10); c1 at (50, 50) and (90, 90).
        # Pred: c0 2 px away (TP), c0 5 px from the c1 nucleus (detected,
        # wrong class), c1 far away (FP).
        _sample([[10 * s, 10 * s], [50 * s, 50 * s], [90 * s, 90 * s]],
                [0, 1, 1], [[12, 10], [50, 55], [200, 200]], [0, 0, 1],
                [0.9, 0.8, 0.7],
                scale_factor=(s, s)),
        # one missed c0 nucleus, no prediction
        _sample([[5 * s, 5 * s]], [0], [], [], [], img_id=1,
                scale_factor=(s, s)),
    ]


@pytest.mark.parametrize('matcher', ['hungarian', 'greedy'])
@pytest.mark.parametrize('scale', [1.0, 2.0])
def test_hand_computed_two_classes(matcher, scale):
    metric = METRICS.build(dict(type='PointDetectionMetric', matcher=matcher))
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, _two_images(scale))
    res = metric.evaluate(2)
    # detection: TP 2, 3 predictions, 4 GT
    assert res['points/precision'] == pytest.approx(2 / 3)
    assert res['points/recall'] == pytest.approx(1 / 2)
    assert res['points/f1'] == pytest.approx(4 / 7)
    # per class: c0 TP 1 / 2 pred / 2 GT; c1 TP 0 / 1 pred / 2 GT
    assert res['points/f1_Neoplastic'] == pytest.approx(0.5)
    assert res['points/precision_Inflammatory'] == 0.0
    assert res['points/cls_f1'] == pytest.approx(0.25)
    assert res['points/cls_precision'] == pytest.approx(0.25)
    assert res['points/cls_recall'] == pytest.approx(0.25)
    # HoVer-Net type F1 (weights 2, 2, 1, 1): c0 = 2 / (2 + 2 + 1) = 0.4,
    # c1 = 0 (one pair mislabelled, one FP, one FN); accuracy 1 / 2
    assert res['points/type_acc'] == pytest.approx(0.5)
    assert res['points/type_f1_Neoplastic'] == pytest.approx(0.4)
    assert res['points/type_f1_Inflammatory'] == 0.0
    assert res['points/type_f1'] == pytest.approx(0.2)


def test_single_class_keys_and_radius():
    metric = METRICS.build(dict(type='PointDetectionMetric', radius=4))
    metric.dataset_meta = dict(classes=('nucleus', ))
    metric.process({}, [
        _sample([[0, 0], [20, 20]], [0, 0], [[3, 4], [26, 20]], [0, 0],
                [0.5, 0.6])
    ])
    res = metric.evaluate(1)
    # (3, 4) is exactly 5 px away: outside a 4 px radius
    assert res == pytest.approx({
        'points/precision': 0.0,
        'points/recall': 0.0,
        'points/f1': 0.0,
        'points/cls_precision': 0.0,
        'points/cls_recall': 0.0,
        'points/cls_f1': 0.0,
        'points/precision_nucleus': 0.0,
        'points/recall_nucleus': 0.0,
        'points/f1_nucleus': 0.0
    })
    metric = METRICS.build(dict(type='PointDetectionMetric', radius=5))
    metric.dataset_meta = dict(classes=('nucleus', ))
    metric.process({}, [
        _sample([[0, 0], [20, 20]], [0, 0], [[3, 4], [26, 20]], [0, 0],
                [0.5, 0.6])
    ])
    res = metric.evaluate(1)
    assert res['points/f1'] == pytest.approx(0.5)
    assert res['points/cls_f1'] == pytest.approx(0.5)


def test_absent_class_is_skipped_in_mean_and_empty_dataset_is_nan():
    metric = METRICS.build(dict(type='PointDetectionMetric'))
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process({}, [_sample([[1, 1]], [0], [[1, 1]], [0], [1.])])
    res = metric.evaluate(1)
    assert math.isnan(res['points/f1_Inflammatory'])
    assert res['points/cls_f1'] == 1.0
    metric.process({}, [_sample([], [], [], [], [])])
    res = metric.evaluate(1)
    assert math.isnan(res['points/f1']) and math.isnan(res['points/cls_f1'])


def test_errors():
    with pytest.raises(ValueError, match='matcher'):
        METRICS.build(dict(type='PointDetectionMetric', matcher='nearest'))
    with pytest.raises(ValueError, match='radius'):
        METRICS.build(dict(type='PointDetectionMetric', radius=0))
    metric = METRICS.build(dict(type='PointDetectionMetric'))
    metric.dataset_meta = dict(classes=CLASSES)
    with pytest.raises(ValueError, match=r'image 0: pred labels .*0\.\.1'):
        metric.process({}, [_sample([[1, 1]], [0], [[1, 1]], [2], [1.])])
    bad = _sample([[1, 1]], [0], [[1, 1]], [0], [1.])
    del bad['pred_instances']['points']
    with pytest.raises(KeyError, match='pred_instances'):
        metric.process({}, [bad])
