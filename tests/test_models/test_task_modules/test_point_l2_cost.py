import math

import pytest
import torch
from mmdet.registry import TASK_UTILS
from mmengine.structures import InstanceData

import pns_mmdet  # noqa: F401  (registers PointL2Cost)
from pns_mmdet.models.task_modules import PointL2Cost


def test_registered_in_mmdet_task_utils():
    cls = TASK_UTILS.get('PointL2Cost')
    assert cls is PointL2Cost
    assert cls.__module__.startswith('pns_mmdet')


def test_cost_matrix_hand_computed():
    cost = PointL2Cost(weight=0.1)
    pred = InstanceData(points=torch.tensor([[0., 0.], [3., 4.], [6., 8.]]))
    gt = InstanceData(points=torch.tensor([[0., 4.], [3., 0.]]))
    expected = 0.1 * torch.tensor([[4., 3.], [3., 4.], [
        math.hypot(6, 4), math.hypot(3, 8)]])
    torch.testing.assert_close(cost(pred, gt), expected)


def test_cost_is_exact_for_large_coordinates():
    # 1000-px images: the matmul cdist path would lose ~1e-2 px here.
    cost = PointL2Cost(weight=1.0)
    pred = InstanceData(points=torch.tensor([[999.5, 998.25]]))
    gt = InstanceData(points=torch.tensor([[999.5, 998.0]]))
    assert cost(pred, gt).item() == pytest.approx(0.25, abs=1e-6)


def test_missing_points_field_is_named():
    cost = PointL2Cost()
    with pytest.raises(KeyError, match='gt_instances.points'):
        cost(InstanceData(points=torch.zeros(1, 2)),
             InstanceData(bboxes=torch.zeros(1, 4)))


def _assigner():
    return TASK_UTILS.build(
        dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='ClassificationCost', weight=1.0),
                dict(type='PointL2Cost', weight=0.1)
            ]))


def test_hungarian_picks_nearest_anchor_with_equal_scores():
    # 2 x 3 anchor grid of stride 8: (4, 4) (12, 4) (20, 4) (4, 12) ...
    xs, ys = torch.tensor([4., 12., 20.]), torch.tensor([4., 12.])
    gy, gx = torch.meshgrid(ys, xs, indexing='ij')
    anchors = torch.stack([gx, gy], -1).reshape(-1, 2)
    pred = InstanceData(scores=torch.zeros(6, 2), points=anchors)
    gt = InstanceData(
        points=torch.tensor([[13., 11.]]), labels=torch.tensor([0]))
    result = _assigner().assign(pred, gt)
    assert result.gt_inds.tolist() == [0, 0, 0, 0, 1, 0]


def test_hungarian_is_global_not_greedy():
    # Greedy (g0 first) would give g0->a0 (4) and g1->a1 (13): total 17.
    # The optimum is g0->a1 (6) and g1->a0 (3): total 9.
    pred = InstanceData(
        scores=torch.zeros(2, 2), points=torch.tensor([[0., 0.], [10., 0.]]))
    gt = InstanceData(
        points=torch.tensor([[4., 0.], [-3., 0.]]),
        labels=torch.tensor([0, 0]))
    result = _assigner().assign(pred, gt)
    assert result.gt_inds.tolist() == [2, 1]


def test_hungarian_class_probability_outweighs_small_distance():
    # a0 at distance 2 but p(c)=0.1: cost 0.2 - 0.1 = 0.1;
    # a1 at distance 5 with p(c)=0.9: cost 0.5 - 0.9 = -0.4 -> a1 wins.
    p_a0, p_a1 = 0.1, 0.9
    scores = torch.log(torch.tensor([[p_a0, 1 - p_a0], [p_a1, 1 - p_a1]]))
    pred = InstanceData(
        scores=scores, points=torch.tensor([[12., 0.], [15., 0.]]))
    gt = InstanceData(
        points=torch.tensor([[10., 0.]]), labels=torch.tensor([0]))
    result = _assigner().assign(pred, gt)
    assert result.gt_inds.tolist() == [0, 1]
