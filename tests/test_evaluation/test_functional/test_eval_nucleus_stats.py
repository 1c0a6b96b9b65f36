import math

import numpy as np
import pytest

from pns_mmdet.evaluation.functional import (image_instance_stats, nanmean,
                                             summarize_instance_stats)

NAN = float('nan')

TRUE = np.array([[1, 1, 1, 0, 2, 2],
                 [1, 1, 1, 0, 2, 2],
                 [0, 0, 0, 0, 0, 0],
                 [3, 3, 0, 0, 0, 0]])
PRED = np.array([[1, 1, 0, 0, 2, 2],
                 [1, 1, 0, 0, 2, 2],
                 [0, 0, 0, 0, 2, 2],
                 [0, 0, 0, 0, 0, 0]])


def _class_map(inst, classes):
    lut = np.zeros(inst.max() + 1, np.int64)
    lut[1:] = classes
    return lut[inst]


def test_image_stats_per_class():
    # GT classes: nucleus 1 -> 1, 2 -> 2, 3 -> 1; pred: both class 1
    stats = image_instance_stats(TRUE, PRED, _class_map(TRUE, [1, 2, 1]),
                                 _class_map(PRED, [1, 1]), num_classes=3)
    assert stats['pq'] == pytest.approx(8 / 15)
    assert stats['bpq'] == pytest.approx(8 / 15)
    # class 1: GT {1, 3}, pred {1, 2}: 1 match (2/3), 1 FP, 1 FN
    # class 2: GT {2}, no pred -> 0; class 3: not in GT -> NaN
    np.testing.assert_allclose(stats['class_pq'], [1 / 3, 0.0, NAN])


def test_image_stats_empty_gt_is_nan_for_pannuke():
    empty = np.zeros_like(TRUE)
    stats = image_instance_stats(empty, PRED, empty, _class_map(PRED, [2, 2]),
                                 num_classes=2)
    assert math.isnan(stats['bpq'])
    assert all(math.isnan(v) for v in stats['class_pq'])
    assert stats['pq'] == 0.0 and stats['aji'] == 0.0


def test_image_stats_errors():
    with pytest.raises(ValueError, match='class maps'):
        image_instance_stats(TRUE, PRED, num_classes=2)
    with pytest.raises(ValueError, match='1..2'):
        image_instance_stats(TRUE, PRED, _class_map(TRUE, [1, 2, 3]),
                             _class_map(PRED, [1, 1]), num_classes=2)


def test_summary_pannuke_tissue_protocol():
    stats = [
        dict(aji=.5, aji_plus=.5, dq=.5, sq=.5, pq=.5, bpq=.8,
             class_pq=[.6, NAN]),
        dict(aji=NAN, aji_plus=NAN, dq=NAN, sq=NAN, pq=NAN, bpq=NAN,
             class_pq=[NAN, NAN]),
        dict(aji=.1, aji_plus=.2, dq=.3, sq=.4, pq=.5, bpq=.5,
             class_pq=[.2, .4]),
        dict(aji=.3, aji_plus=.2, dq=.1, sq=.0, pq=.2, bpq=.7,
             class_pq=[NAN, 1.]),
    ]
    out = summarize_instance_stats(stats, ('a', 'b'),
                                   ['Breast', 'Breast', 'Colon', 'Colon'])
    assert out['aji'] == pytest.approx(0.3)  # NaN image skipped
    assert out['pq'] == pytest.approx(0.4)
    assert out['num_images'] == 4
    # Breast: bPQ .8, mPQ .6; Colon: bPQ .6, mPQ (.3 + 1) / 2 = .65
    assert out['per_tissue']['Breast'] == dict(bpq=pytest.approx(.8),
                                               mpq=pytest.approx(.6),
                                               num_images=2)
    assert out['per_tissue']['Colon']['mpq'] == pytest.approx(.65)
    assert out['bpq'] == pytest.approx(.7)
    assert out['mpq'] == pytest.approx(.625)
    assert out['pq_a'] == pytest.approx(.4)
    assert out['pq_b'] == pytest.approx(.7)
    # without tissues every image is one group
    out = summarize_instance_stats(stats, ('a', 'b'))
    assert out['bpq'] == pytest.approx(2 / 3)
    assert out['mpq'] == pytest.approx((.6 + .3 + 1.) / 3)
    assert list(out['per_tissue']) == ['all']


def test_summary_without_classes_and_empty():
    out = summarize_instance_stats([])
    assert math.isnan(out['pq']) and out['num_images'] == 0
    assert 'bpq' not in out
    assert math.isnan(nanmean([NAN, NAN])) and nanmean([1, NAN, 3]) == 2
