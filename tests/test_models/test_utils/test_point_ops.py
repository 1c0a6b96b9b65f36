import pytest
import torch

from pns_mmdet.models.utils import (boxes_to_points, clip_points, point_nms,
                                    points_to_boxes, points_to_grid,
                                    rescale_points)


def greedy_reference(points, scores, radius):
    """Plain loop version of upstream's greedy point NMS."""
    dist = (points[:, None] - points[None]).norm(dim=-1).tolist()
    order = sorted(range(len(points)), key=lambda i: -float(scores[i]))
    suppressed, kept = set(), []
    for i in order:
        if i in suppressed:
            continue
        kept.append(i)
        suppressed.update(j for j in range(len(points))
                          if j != i and dist[i][j] <= radius)
    return kept


def test_point_nms_hand_case_chain():
    """A chain a-b-c, 10 px apart, scores b > a > c, radius 12.

    Greedy keeps b, which suppresses a and c; a one-shot "suppressed by any
    higher-scored point" rule would wrongly drop c only because of a.
    """
    points = torch.tensor([[0., 0.], [10., 0.], [20., 0.], [100., 0.]])
    scores = torch.tensor([0.8, 0.9, 0.7, 0.1])
    assert point_nms(points, scores, 12).tolist() == [1, 3]
    # Scores a > b > c: a kept, b suppressed, c (20 px from a) kept.
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1])
    assert point_nms(points, scores, 12).tolist() == [0, 2, 3]
    # Boundary: distance exactly equal to the radius is suppressed.
    assert point_nms(points, scores, 10).tolist() == [0, 2, 3]
    assert point_nms(points, scores, 9.99).tolist() == [0, 1, 2, 3]


def test_point_nms_matches_greedy_loop_on_random_points():
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        points = torch.rand(200, 2, generator=gen) * 100
        scores = torch.rand(200, generator=gen)
        kept = point_nms(points, scores, 8.0).tolist()
        assert kept == greedy_reference(points, scores, 8.0)


def test_point_nms_long_chains_match_greedy_loop():
    """Scores decreasing along the rows of a dense anchor grid, and along a
    line: long suppression chains, resolved over many rounds."""
    ys, xs = torch.meshgrid(
        torch.arange(12.) * 8, torch.arange(12.) * 8, indexing='ij')
    grid = torch.stack([xs, ys], -1).reshape(-1, 2)
    scores = -torch.arange(len(grid), dtype=torch.float32)
    assert point_nms(grid, scores, 12).tolist() == greedy_reference(
        grid, scores, 12)
    line = torch.stack([torch.arange(50.) * 10, torch.zeros(50)], -1)
    kept = point_nms(line, -torch.arange(50.), 12)
    assert kept.tolist() == list(range(0, 50, 2))


def test_point_nms_disabled_and_empty():
    points = torch.tensor([[0., 0.], [1., 0.]])
    scores = torch.tensor([0.2, 0.5])
    assert point_nms(points, scores, 0).tolist() == [1, 0]
    assert point_nms(torch.zeros(0, 2), torch.zeros(0), 12).numel() == 0
    with pytest.raises(ValueError, match=r'\(N, 2\)'):
        point_nms(torch.zeros(3), torch.zeros(3), 1)


def test_boxes_and_points():
    pts = torch.tensor([[10., 20.]])
    boxes = points_to_boxes(pts, 8)
    assert boxes.tolist() == [[6., 16., 14., 24.]]
    assert boxes_to_points(boxes).tolist() == pts.tolist()


def test_clip_and_rescale():
    pts = torch.tensor([[-3., 5.], [50., 70.]])
    assert clip_points(pts, (60, 40)).tolist() == [[0., 5.], [39., 59.]]
    # Pixel 0 of the original is pixels 0-1 of a 2x image (centre 0.5)
    # and rows 0-3 of a 4x image (centre 1.5).
    out = rescale_points(torch.tensor([[0.5, 1.5]]), (2., 4.))
    torch.testing.assert_close(out, torch.tensor([[0., 0.]]))
    assert rescale_points(torch.tensor([[7., 3.]]), (1., 1.)).tolist() == [[
        7., 3.
    ]]


def test_points_to_grid_cell_centres():
    # Stride 4, 2 x 3 cells: centres at x = 1.5, 5.5, 9.5 map to the
    # align_corners=False cell centres -2/3, 0, 2/3.
    grid = points_to_grid(torch.tensor([[1.5, 1.5], [5.5, 5.5],
                                        [9.5, 1.5]]), 4, (2, 3))
    torch.testing.assert_close(
        grid, torch.tensor([[-2 / 3, -0.5], [0., 0.5], [2 / 3, -0.5]]))
