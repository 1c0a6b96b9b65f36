import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from pns_mmdet.evaluation.functional import (detection_scores,
                                             greedy_point_matching,
                                             pair_coordinates, type_counts,
                                             type_f1_scores)
from pns_mmdet.evaluation.functional.point_matching import PointPairing


def test_pair_coordinates_radius_cut_inclusive():
    true = np.array([[0, 0], [10, 0]])
    pred = np.array([[12, 0], [30, 0]])
    res = pair_coordinates(true, pred, radius=12)
    # true 0 - pred 0 at exactly 12 px is kept; true 1 - pred 1 at 20 px
    # (the assignment's other pair) is dropped
    np.testing.assert_array_equal(res.pairs, [[0, 0]])
    np.testing.assert_array_equal(res.unpaired_true, [1])
    np.testing.assert_array_equal(res.unpaired_pred, [1])


def test_pair_coordinates_global_assignment_before_cut():
    # HoVer-Net's definition: the min-total-distance assignment pairs
    # (p0, A) + (p1, B) = 2 + 15.6 < (p0, B) + (p1, A) = 8 + 12, then the
    # cut drops (p1, B): one pair, although two are possible within 12 px.
    true = np.array([[0, 0], [10, 0]])  # A, B
    pred = np.array([[2, 0], [0, 12]])  # p0, p1
    res = pair_coordinates(true, pred, 12)
    np.testing.assert_array_equal(res.pairs, [[0, 0]])


def test_greedy_vs_hungarian():
    true = np.array([[0, 0], [20, 0]])
    pred = np.array([[11, 0], [22, 0]])
    scores = np.array([0.9, 0.5])
    # greedy: p0 (best score) takes its nearest GT (B, 9 px); p1 then only
    # has A at 22 px > 12: one match
    greedy = greedy_point_matching(true, pred, scores, 12)
    np.testing.assert_array_equal(greedy.pairs, [[1, 0]])
    np.testing.assert_array_equal(greedy.unpaired_true, [0])
    np.testing.assert_array_equal(greedy.unpaired_pred, [1])
    # Hungarian: (p0, A) + (p1, B) = 13 px in total: two matches
    hung = pair_coordinates(true, pred, 12)
    np.testing.assert_array_equal(hung.pairs, [[0, 0], [1, 1]])
    # score order matters for greedy: with p1 first both are matched
    greedy = greedy_point_matching(true, pred, scores[::-1], 12)
    np.testing.assert_array_equal(greedy.pairs, [[0, 0], [1, 1]])


def test_matching_empty_and_bad_input():
    for fn in (pair_coordinates, greedy_point_matching):
        res = fn(np.zeros((0, 2)), np.array([[1., 2.]]))
        assert res.pairs.shape == (0, 2) and res.tp == 0
        np.testing.assert_array_equal(res.unpaired_pred, [0])
        res = fn(np.array([[1., 2.], [3, 4]]), np.zeros((0, 2)))
        np.testing.assert_array_equal(res.unpaired_true, [0, 1])
        with pytest.raises(ValueError, match=r'\(N, 2\)'):
            fn(np.zeros((3, 3)), np.zeros((1, 2)))
        with pytest.raises(ValueError, match='NaN'):
            fn(np.array([[np.nan, 1.]]), np.zeros((1, 2)))


def test_matchings_are_valid_on_random_points():
    rng = np.random.default_rng(0)
    for _ in range(20):
        true = rng.random((30, 2)) * 100
        pred = true[:25] + rng.normal(0, 5, (25, 2))
        scores = rng.random(25)
        hung = pair_coordinates(true, pred, 12)
        greedy = greedy_point_matching(true, pred, scores, 12)
        dist = np.linalg.norm(true[:, None] - pred[None], axis=-1)
        rows, cols = linear_sum_assignment(dist)
        assert hung.tp == int((dist[rows, cols] <= 12).sum())
        for res in (hung, greedy):
            t, p = res.pairs.T
            assert len(set(t)) == len(t) and len(set(p)) == len(p)
            assert (dist[t, p] <= 12).all()
            assert res.tp + res.unpaired_true.size == 30
            assert res.tp + res.unpaired_pred.size == 25


def test_detection_scores_and_conventions():
    assert detection_scores(3, 4, 5) == pytest.approx((0.75, 0.6, 2 / 3))
    p, r, f1 = detection_scores(0, 0, 0)
    assert np.isnan(p) and np.isnan(r) and np.isnan(f1)
    assert detection_scores(0, 0, 5) == (0.0, 0.0, 0.0)
    assert detection_scores(0, 4, 0) == (0.0, 0.0, 0.0)
    p, r, f1 = detection_scores(np.array([1, 0]), np.array([2, 0]),
                                np.array([1, 0]))
    np.testing.assert_allclose(p, [0.5, np.nan])
    np.testing.assert_allclose(f1, [2 / 3, np.nan])
    with pytest.raises(ValueError, match='exceed'):
        detection_scores(5, 4, 5)


def test_type_f1_hand_computed():
    # pairs (true, pred): (0, 0), (1, 1), (2, 2); true 3 and pred 3 unpaired
    pairing = PointPairing(
        np.array([[0, 0], [1, 1], [2, 2]]), np.array([3]), np.array([3]))
    counts = type_counts(pairing, np.array([0, 0, 1, 1]),
                         np.array([0, 1, 1, 0]), num_classes=2)
    np.testing.assert_array_equal(counts['tp_dt'], [1, 1])
    np.testing.assert_array_equal(counts['fp_dt'], [0, 1])
    np.testing.assert_array_equal(counts['fn_dt'], [1, 0])
    np.testing.assert_array_equal(counts['fp_d'], [1, 0])
    np.testing.assert_array_equal(counts['fn_d'], [0, 1])
    acc, f1 = type_f1_scores(counts)
    assert acc == pytest.approx(2 / 3)
    # class 0: 2 / (2 + 2*0 + 2*1 + 1 + 0); class 1: 2 / (2 + 2 + 0 + 0 + 1)
    np.testing.assert_allclose(f1, [0.4, 0.4])
    # a class that never occurs is undefined
    counts = type_counts(pairing, np.array([0, 0, 1, 1]),
                         np.array([0, 1, 1, 0]), num_classes=3)
    assert np.isnan(type_f1_scores(counts)[1][2])
