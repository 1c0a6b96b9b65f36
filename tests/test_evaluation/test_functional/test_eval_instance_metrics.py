import glob
import os.path as osp

import numpy as np
import pytest
from eval_helpers import (PERTURBATIONS, naive_aji, naive_aji_plus, naive_pq,
                          perturb, random_instance_map)
from PIL import Image

from pns_mmdet.evaluation.functional import (aji, aji_plus, instance_metrics,
                                             max_weight_unique_pairs,
                                             pairwise_overlaps, pq)

# Case A: two matched nuclei (IoU 2/3 each), one missed GT nucleus.
TRUE_A = np.array([[1, 1, 1, 0, 2, 2],
                   [1, 1, 1, 0, 2, 2],
                   [0, 0, 0, 0, 0, 0],
                   [3, 3, 0, 0, 0, 0]])
PRED_A = np.array([[1, 1, 0, 0, 2, 2],
                   [1, 1, 0, 0, 2, 2],
                   [0, 0, 0, 0, 2, 2],
                   [0, 0, 0, 0, 0, 0]])
# Case B: one prediction covering two GT nuclei (AJI over-penalisation).
TRUE_B = np.array([[1, 1, 1, 2, 2, 0]])
PRED_B = np.array([[1, 1, 1, 1, 1, 1]])


def test_hand_computed_case_a():
    res = pq(TRUE_A, PRED_A)
    assert (res.tp, res.fp, res.fn) == (2, 0, 1)
    assert res.dq == pytest.approx(0.8)
    assert res.sq == pytest.approx(2 / 3)
    assert res.pq == pytest.approx(8 / 15)
    np.testing.assert_array_equal(res.paired_true, [1, 2])
    np.testing.assert_array_equal(res.paired_pred, [1, 2])
    np.testing.assert_allclose(res.paired_iou, [2 / 3, 2 / 3])
    np.testing.assert_array_equal(res.unpaired_true, [3])
    assert res.unpaired_pred.size == 0
    # 8 px intersection / (6 + 6 pair unions + 2 px of the missed nucleus)
    assert aji(TRUE_A, PRED_A) == pytest.approx(4 / 7)
    assert aji_plus(TRUE_A, PRED_A) == pytest.approx(4 / 7)


def test_hand_computed_case_b_over_penalisation():
    # AJI pairs both GTs with the single prediction: (3 + 2) / (6 + 6)
    assert aji(TRUE_B, PRED_B) == pytest.approx(5 / 12)
    # AJI+ pairs it once (IoU 0.5 beats 1/3); GT 2 (2 px) stays unpaired
    assert aji_plus(TRUE_B, PRED_B) == pytest.approx(3 / 8)
    # IoU 0.5 is not > 0.5: no match at the default threshold
    res = pq(TRUE_B, PRED_B)
    assert (res.tp, res.fp, res.fn, res.dq, res.sq, res.pq) == (0, 1, 2, 0.0,
                                                                0.0, 0.0)
    # below 0.5 a unique assignment is made first, then thresholded
    res = pq(TRUE_B, PRED_B, match_iou=0.4)
    assert (res.tp, res.fp, res.fn) == (1, 0, 1)
    assert res.dq == pytest.approx(2 / 3)
    assert res.sq == pytest.approx(0.5)
    assert res.pq == pytest.approx(1 / 3)


def test_aji_tie_break_matches_hovernet_eps():
    # GT 1 (4 px) overlaps pred 1 (1 px inside) and pred 2 (2 px inside,
    # 4 px outside): IoU 1/4 vs 2/8, a tie. HoVer-Net's inter/(union+1e-6)
    # prefers the larger pair (pred 2): AJI = 2 / (8 + 1), not 1 / (4 + 6).
    true = np.array([[1, 1, 1, 1, 0, 0, 0, 0, 0, 0]])
    pred = np.array([[1, 2, 2, 0, 2, 2, 2, 2, 0, 0]])
    assert aji(true, pred) == pytest.approx(2 / 9)
    assert naive_aji(true, pred) == pytest.approx(2 / 9)


@pytest.mark.parametrize('fn', [aji, aji_plus])
def test_empty_maps(fn):
    empty = np.zeros((5, 5), np.int32)
    full = np.zeros((5, 5), np.int32)
    full[1:3, 1:3] = 4
    assert np.isnan(fn(empty, empty))
    assert fn(empty, full) == 0.0
    assert fn(full, empty) == 0.0


def test_empty_maps_pq():
    empty = np.zeros((5, 5), np.uint8)
    full = empty.copy()
    full[1:3, 1:3] = 4
    both = pq(empty, empty)
    assert np.isnan(both.dq) and np.isnan(both.sq) and np.isnan(both.pq)
    assert (both.tp, both.fp, both.fn) == (0, 0, 0)
    for t, p, fp, fn in ((empty, full, 1, 0), (full, empty, 0, 1)):
        res = pq(t, p)
        assert (res.dq, res.sq, res.pq, res.fp, res.fn) == (0., 0., 0., fp,
                                                            fn)
    metrics = instance_metrics(empty, empty)
    assert set(metrics) == {'aji', 'aji_plus', 'dq', 'sq', 'pq'}
    assert all(np.isnan(v) for v in metrics.values())


def test_no_background_and_dtypes():
    true = np.array([[5, 5], [3, 9]])
    for dtype in (np.uint8, np.int16, np.uint16, np.int32, np.uint32,
                  np.int64, np.uint64):
        m = instance_metrics(true.astype(dtype), true.astype(dtype))
        assert m == dict(aji=1.0, aji_plus=1.0, dq=1.0, sq=1.0, pq=1.0)
    # bool map = one instance
    m = instance_metrics(true > 3, true > 0)
    assert m['pq'] == pytest.approx(0.75)  # IoU 3/4, one match


def test_bad_input():
    with pytest.raises(ValueError, match='shape'):
        pq(np.zeros((3, 3), int), np.zeros((3, 4), int))
    with pytest.raises(ValueError, match='>= 0'):
        aji(np.full((2, 2), -1), np.zeros((2, 2), int))
    with pytest.raises(TypeError, match='integer'):
        aji(np.zeros((2, 2), float), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match='2-D'):
        aji(np.zeros((2, 2, 2), int), np.zeros((2, 2, 2), int))


def test_huge_ids_use_sparse_path():
    rng = np.random.default_rng(3)
    true = random_instance_map(rng, n=15)
    pred = perturb(true, rng, 'shift')
    big_t = np.where(true > 0, true.astype(np.int64) * 10**12 + 7, 0)
    big_p = np.where(pred > 0, pred.astype(np.int64) * 10**11 + 3, 0)
    assert instance_metrics(big_t, big_p) == pytest.approx(
        instance_metrics(true, pred))


def test_overlaps_counts_every_pair():
    ov = pairwise_overlaps(TRUE_A, PRED_A)
    np.testing.assert_array_equal(ov.true_ids, [1, 2, 3])
    np.testing.assert_array_equal(ov.true_areas, [6, 4, 2])
    np.testing.assert_array_equal(ov.pred_areas, [4, 6])
    np.testing.assert_array_equal(ov.pair_true, [0, 1])
    np.testing.assert_array_equal(ov.pair_pred, [0, 1])
    np.testing.assert_array_equal(ov.pair_inter, [4, 4])
    np.testing.assert_array_equal(ov.pair_union, [6, 6])


def test_max_weight_unique_pairs_component_vs_dense():
    from scipy.optimize import linear_sum_assignment
    rng = np.random.default_rng(1)
    for _ in range(20):
        dense = rng.random((8, 9)) * (rng.random((8, 9)) < 0.3)
        rows, cols = np.nonzero(dense)
        sel = max_weight_unique_pairs(rows, cols, dense[rows, cols])
        assert len(set(rows[sel])) == sel.size == len(set(cols[sel]))
        r, c = linear_sum_assignment(dense, maximize=True)
        assert dense[rows[sel], cols[sel]].sum() == pytest.approx(
            dense[r, c].sum())


@pytest.mark.parametrize('kind', PERTURBATIONS)
def test_agrees_with_naive_on_random_maps(kind):
    rng = np.random.default_rng(42)
    for _ in range(8):
        true = random_instance_map(rng, n=int(rng.integers(0, 15)))
        pred = perturb(true, rng, kind) if true.any() else \
            random_instance_map(rng, n=3)
        got = instance_metrics(true, pred)
        dq, sq, pq_, *_ = naive_pq(true, pred)
        want = dict(
            aji=naive_aji(true, pred),
            aji_plus=naive_aji_plus(true, pred),
            dq=dq,
            sq=sq,
            pq=pq_)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], atol=1e-9,
                                       err_msg=key)
        for thr in (0.3, 0.7):
            np.testing.assert_allclose(
                pq(true, pred, thr).pq, naive_pq(true, pred, thr)[2],
                atol=1e-9)


def test_invariant_to_label_permutation_and_symmetric_pq():
    rng = np.random.default_rng(7)
    for _ in range(10):
        true = random_instance_map(rng, n=12)
        pred = perturb(true, rng, 'mixed')
        ref = instance_metrics(true, pred)
        got = instance_metrics(
            perturb(true, rng, 'relabel'), perturb(pred, rng, 'relabel'))
        assert got == pytest.approx(ref)
        swapped = pq(pred, true)
        assert (swapped.dq, swapped.sq) == pytest.approx((ref['dq'],
                                                          ref['sq']))


@pytest.fixture(scope='module')
def monuseg_maps(shared_data):
    files = sorted(
        glob.glob(osp.join(shared_data, 'monuseg2018_test', 'inst_masks',
                           '*.png')))
    if not files:
        pytest.skip('monuseg2018_test/inst_masks has no PNG maps')
    return [np.array(Image.open(f)) for f in files]


def test_real_maps_identity(monuseg_maps):
    for true in monuseg_maps:
        assert instance_metrics(true, true) == dict(
            aji=1.0, aji_plus=1.0, dq=1.0, sq=1.0, pq=1.0)


@pytest.mark.parametrize('kind', ['shift', 'erode', 'drop', 'merge', 'mixed'])
def test_real_maps_agree_with_naive(monuseg_maps, kind):
    rng = np.random.default_rng(5)
    # 400 px crops keep the per-instance reference loop fast
    for true in monuseg_maps[:3]:
        y, x = rng.integers(0, true.shape[0] - 400, 2)
        true = true[y:y + 400, x:x + 400].astype(np.int32)
        pred = perturb(true, rng, kind)
        got = instance_metrics(true, pred)
        dq, sq, pq_, *_ = naive_pq(true, pred)
        np.testing.assert_allclose(
            [got['aji'], got['aji_plus'], got['dq'], got['sq'], got['pq']],
            [naive_aji(true, pred), naive_aji_plus(true, pred), dq, sq, pq_],
            atol=1e-9)
