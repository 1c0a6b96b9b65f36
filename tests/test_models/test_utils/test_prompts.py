import pytest
import torch

from pns_mmdet.models.utils import build_point_prompts, sample_interior_points


def test_k_nearest_negatives_hand_computed():
    # Points on a line at x = 0, 1, 3, 7 (y = 0): nearest others are known.
    points = torch.tensor([[0., 0.], [1., 0.], [3., 0.], [7., 0.]])
    coords, labels = build_point_prompts(points, k=2)
    assert coords.shape == (4, 3, 2)
    assert labels.shape == (4, 3)
    assert labels.dtype == torch.long
    # Positive first, then negatives in increasing distance.
    expected_x = torch.tensor([[0., 1., 3.], [1., 0., 3.], [3., 1., 0.],
                               [7., 3., 1.]])
    assert torch.equal(coords[..., 0], expected_x)
    assert torch.equal(coords[..., 1], torch.zeros(4, 3))
    assert torch.equal(labels, torch.tensor([[1, 0, 0]] * 4))


def test_k1_default_and_2d_distance():
    points = torch.tensor([[10., 10.], [13., 14.], [10., 16.]])
    # Distances: 0-1 = 5, 0-2 = 6, 1-2 = sqrt(9 + 4) = 3.61
    coords, labels = build_point_prompts(points, k=1)
    assert torch.equal(coords[:, 1],
                       torch.tensor([[13., 14.], [10., 16.], [13., 14.]]))
    assert torch.equal(labels, torch.tensor([[1, 0], [1, 0], [1, 0]]))


def test_padding_when_fewer_than_k_others():
    points = torch.tensor([[5., 5.], [9., 5.]])
    coords, labels = build_point_prompts(points, k=3)
    assert torch.equal(labels, torch.tensor([[1, 0, -1, -1], [1, 0, -1,
                                                              -1]]))
    assert torch.equal(coords[0], torch.tensor([[5., 5.], [9., 5.], [0., 0.],
                                                [0., 0.]]))
    # A single nucleus gets only padding.
    coords, labels = build_point_prompts(torch.tensor([[4., 2.]]), k=1)
    assert torch.equal(labels, torch.tensor([[1, -1]]))
    assert torch.equal(coords, torch.tensor([[[4., 2.], [0., 0.]]]))


def test_k0_and_empty_and_ties():
    points = torch.tensor([[1., 1.], [2., 2.]])
    coords, labels = build_point_prompts(points, k=0)
    assert coords.shape == (2, 1, 2)
    assert torch.equal(labels, torch.ones(2, 1, dtype=torch.long))
    coords, labels = build_point_prompts(torch.zeros(0, 2), k=1)
    assert coords.shape == (0, 2, 2) and labels.shape == (0, 2)
    # Equidistant neighbours: the lower index wins; a duplicate point of
    # another nucleus is still a negative (distance 0), never itself.
    points = torch.tensor([[0., 0.], [2., 0.], [-2., 0.], [0., 0.]])
    coords, labels = build_point_prompts(points, k=2)
    assert torch.equal(coords[0, 1:], torch.tensor([[0., 0.], [2., 0.]]))
    assert torch.equal(coords[1, 1:], torch.tensor([[0., 0.], [0., 0.]]))
    assert torch.equal(labels[1], torch.tensor([1, 0, 0]))


def test_build_point_prompts_bad_input():
    with pytest.raises(ValueError, match=r'\(N, 2\)'):
        build_point_prompts(torch.zeros(3, 3), k=1)
    with pytest.raises(ValueError, match='k must be'):
        build_point_prompts(torch.zeros(3, 2), k=-1)


def test_sample_interior_points_inside_and_uniform():
    masks = torch.zeros(3, 8, 10, dtype=torch.bool)
    masks[0, 2, 3] = True  # single pixel: the only choice
    masks[1, 0:2, 0:2] = True  # 4 pixels
    masks[2, 5:8, 6:10] = True
    gen = torch.Generator().manual_seed(0)
    pts = sample_interior_points(masks, generator=gen)
    assert pts.shape == (3, 2) and pts.dtype == torch.float32
    assert pts[0].tolist() == [3., 2.]
    for i in range(3):
        x, y = pts[i].long().tolist()
        assert masks[i, y, x]
    # Uniform over the 4 pixels of mask 1 (4000 draws, each ~1000).
    draws = torch.stack([
        sample_interior_points(masks[1:2], generator=gen)[0]
        for _ in range(4000)
    ])
    _, counts = torch.unique(draws, dim=0, return_counts=True)
    assert len(counts) == 4
    assert counts.min() > 850 and counts.max() < 1150


def test_sample_interior_points_rejects_empty():
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, 1, 1] = True
    with pytest.raises(ValueError, match=r'masks \[1\] are empty'):
        sample_interior_points(masks)
    assert sample_interior_points(torch.zeros(0, 4, 4)).shape == (0, 2)
