import math

import pytest
import torch
import torch.nn as nn
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

import pns_mmdet  # noqa: F401
from pns_mmdet.models.dense_heads import PointAnchorHead


def make_head(**kwargs) -> PointAnchorHead:
    cfg = dict(
        type='PointAnchorHead',
        num_classes=1,
        in_channels=4,
        feat_channels=4,
        hidden_dim=8,
        dropout=0.0,
        stride=8,
        feat_strides=(4, 8, 16, 32),
        feat_levels=(0, 1, 2))
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def pyramid(batch: int, height: int, width: int, channels: int = 4):
    """Random FPN-like features for a padded input of height x width."""
    return tuple(
        torch.randn(batch, channels, height // s, width // s)
        for s in (4, 8, 16, 32))


def zero_last_linear(mlp: nn.Sequential) -> None:
    nn.init.zeros_(mlp[-1].weight)
    nn.init.zeros_(mlp[-1].bias)


def test_registered():
    assert MODELS.get('PointAnchorHead') is PointAnchorHead
    assert PointAnchorHead.__module__.startswith('pns_mmdet')


def test_anchors_and_grid_for_padded_odd_input():
    """13 x 21 input padded to 16 x 24 with lambda = 8."""
    preprocessor = DetDataPreprocessor(pad_size_divisor=8)
    img = torch.zeros(3, 13, 21, dtype=torch.uint8)
    sample = DetDataSample(metainfo=dict(img_shape=(13, 21)))
    data = preprocessor(dict(inputs=[img], data_samples=[sample]), False)
    assert data['inputs'].shape[-2:] == (16, 24)

    head = make_head()
    x = pyramid(1, 16, 24)
    assert head.input_size(x) == (16, 24)
    anchors = head.anchor_points((2, 3))
    expected = torch.tensor([[[4., 4.], [12., 4.], [20., 4.]],
                             [[4., 12.], [12., 12.], [20., 12.]]])
    torch.testing.assert_close(anchors, expected)

    # P2: stride 4, 4 x 6 cells -> g = 2 * (x + 0.5) / 24 - 1.
    from pns_mmdet.models.utils import points_to_grid
    grid = points_to_grid(anchors, 4, (4, 6))
    torch.testing.assert_close(
        grid[0, :, 0], torch.tensor([-0.625, 1 / 24, 17 / 24]))
    torch.testing.assert_close(grid[:, 0, 1], torch.tensor([-0.4375, 0.5625]))


@pytest.mark.parametrize('stride', [4, 8, 16])
def test_bilinear_sampling_hits_pixel_centres(stride):
    """A feature holding each cell's centre x (input pixels) is sampled
    back to exactly the query x: pixel-centre-correct normalisation."""
    head = make_head()
    h, w = 3, 5
    centres_x = torch.arange(w, dtype=torch.float32) * stride + (stride -
                                                                 1) / 2
    centres_y = torch.arange(h, dtype=torch.float32) * stride + (stride -
                                                                 1) / 2
    feat = torch.stack([
        centres_x.expand(h, w),
        centres_y[:, None].expand(h, w),
    ])[None]
    # Points strictly between the first and last cell centres.
    points = torch.tensor([[[[centres_x[0] + 0.3, centres_y[0] + 0.1],
                             [centres_x[-1] - 0.7, centres_y[-1] - 0.2],
                             [float(stride * 2), float(stride)]]]])
    sampled = head.sample_features(feat, stride, points)  # (1, 2, 1, 3)
    torch.testing.assert_close(sampled[0, :, 0].T, points[0, 0])


@pytest.mark.parametrize('with_deform', [True, False])
def test_forward_shapes_and_zero_offsets_return_anchors(with_deform):
    head = make_head(num_classes=3, with_deform=with_deform)
    zero_last_linear(head.reg_mlp)
    if with_deform:
        zero_last_linear(head.deform_mlp)
    cls_scores, point_preds = head(pyramid(2, 16, 24))
    assert cls_scores.shape == (2, 2, 3, 4)
    assert point_preds.shape == (2, 2, 3, 2)
    anchors = head.anchor_points((2, 3))
    torch.testing.assert_close(point_preds, anchors.expand(2, -1, -1, -1))


def test_input_not_multiple_of_stride_raises():
    head = make_head(stride=16)
    with pytest.raises(ValueError, match='pad_size_divisor'):
        head(pyramid(1, 24, 24))


def _metas(batch, shape):
    return [
        dict(img_shape=shape, batch_input_shape=shape, ori_shape=shape,
             scale_factor=(1., 1.)) for _ in range(batch)
    ]


def test_loss_empty_gt_cls_positive_point_zero():
    head = make_head()
    cls_scores, point_preds = head(pyramid(1, 16, 24))
    gt = InstanceData(
        points=torch.zeros(0, 2), labels=torch.zeros(0, dtype=torch.long))
    losses = head.loss_by_feat(cls_scores, point_preds, [gt],
                               _metas(1, (16, 24)))
    assert losses['loss_cls'].item() > 0
    assert losses['loss_point'].item() == 0
    # Empty images still backpropagate through the classifier.
    losses['loss_cls'].backward()
    assert head.cls_mlp[-1].weight.grad.abs().sum() > 0


def test_loss_one_nucleus_both_positive():
    head = make_head()
    cls_scores, point_preds = head(pyramid(1, 16, 24))
    gt = InstanceData(points=torch.tensor([[9.3, 5.2]]), labels=torch.tensor(
        [0]))
    losses = head.loss_by_feat(cls_scores, point_preds, [gt],
                               _metas(1, (16, 24)))
    assert losses['loss_cls'].item() > 0
    assert losses['loss_point'].item() > 0


def test_loss_values_hand_computed():
    """1 x 2 anchor grid, one nucleus near anchor 1.

    Anchor 1 has p(nucleus) = 0.75 and is matched (cost 0.1*sqrt(5) - 0.75
    against 0.1*sqrt(85) - 0.5 for anchor 0). Class loss is the weighted
    mean (-log 0.75 * 1 + -log 0.5 * beta) / (1 + beta); the point loss is
    gamma * ((12 - 13)^2 + (4 - 6)^2) / 1 nucleus.
    """
    beta, gamma = 0.4, 5e-3
    head = make_head(
        bg_cls_weight=beta,
        loss_reg=dict(type='MSELoss', loss_weight=gamma))
    cls_scores = torch.tensor([[[[0., 0.], [math.log(3.), 0.]]]])
    point_preds = torch.tensor([[[[4., 4.], [12., 4.]]]])
    gt = InstanceData(points=torch.tensor([[13., 6.]]), labels=torch.tensor(
        [0]))
    losses = head.loss_by_feat(cls_scores, point_preds, [gt],
                               _metas(1, (8, 16)))
    expected_cls = (-math.log(0.75) - beta * math.log(0.5)) / (1 + beta)
    assert losses['loss_cls'].item() == pytest.approx(expected_cls, rel=1e-5)
    assert losses['loss_point'].item() == pytest.approx(gamma * 5, rel=1e-5)


def test_regression_normalised_by_number_of_nuclei_in_batch():
    head = make_head(loss_reg=dict(type='MSELoss', loss_weight=1.0))
    cls_scores = torch.zeros(2, 1, 2, 2)
    point_preds = torch.tensor([[[[4., 4.], [12., 4.]]]]).repeat(2, 1, 1, 1)
    gts = [
        InstanceData(
            points=torch.tensor([[4., 5.], [12., 4.]]),
            labels=torch.tensor([0, 0])),
        InstanceData(points=torch.tensor([[6., 4.]]), labels=torch.tensor(
            [0])),
    ]
    losses = head.loss_by_feat(cls_scores, point_preds, gts, _metas(2, (8,
                                                                        16)))
    # Squared errors 1 + 0 + 4 over 3 nuclei.
    assert losses['loss_point'].item() == pytest.approx(5 / 3, rel=1e-5)


def test_loss_through_head_loss_with_data_samples():
    head = make_head(num_classes=2)
    sample = DetDataSample(
        metainfo=dict(img_shape=(16, 24), batch_input_shape=(16, 24)))
    sample.gt_instances = InstanceData(
        points=torch.tensor([[3., 3.], [18., 10.]]),
        labels=torch.tensor([1, 0]),
        bboxes=torch.zeros(2, 4))
    losses = head.loss(pyramid(1, 16, 24), [sample])
    assert set(losses) == {'loss_cls', 'loss_point'}
    sum(losses.values()).backward()
    assert head.fuse_conv.weight.grad is not None


def test_loss_mismatched_batch_shape_raises():
    head = make_head()
    cls_scores, point_preds = head(pyramid(1, 16, 24))
    gt = InstanceData(points=torch.zeros(0, 2), labels=torch.zeros(
        0, dtype=torch.long))
    with pytest.raises(ValueError, match='pad_size_divisor'):
        head.loss_by_feat(cls_scores, point_preds, [gt], _metas(1, (16, 32)))


def test_loss_without_points_names_field():
    head = make_head()
    cls_scores, point_preds = head(pyramid(1, 16, 24))
    gt = InstanceData(bboxes=torch.zeros(1, 4), labels=torch.tensor([0]))
    with pytest.raises(KeyError, match='gt_instances.points'):
        head.loss_by_feat(cls_scores, point_preds, [gt], _metas(1, (16, 24)))


def _logits(probs_nucleus):
    """(C + 1 = 2) logits giving the requested nucleus probabilities."""
    p = torch.tensor(probs_nucleus)
    return torch.stack([p.log(), (1 - p).log()], -1)


def test_predict_background_threshold_clip_and_order():
    head = make_head(test_cfg=dict(nms_radius=0, score_thr=0.0))
    # 1 x 4 anchors: background, nucleus 0.6, nucleus 0.9 (outside the
    # image, clipped), nucleus 0.55.
    cls = _logits([0.3, 0.6, 0.9, 0.55]).reshape(1, 1, 4, 2)
    pts = torch.tensor([[[[4., 4.], [12., 3.], [40., -2.], [27., 5.]]]])
    meta = dict(img_shape=(7, 30), ori_shape=(7, 30), scale_factor=(1., 1.))
    res = head.predict_by_feat(cls, pts, [meta])[0]
    torch.testing.assert_close(res.scores, torch.tensor([0.9, 0.6, 0.55]))
    torch.testing.assert_close(
        res.points, torch.tensor([[29., 0.], [12., 3.], [27., 5.]]))
    assert res.labels.tolist() == [0, 0, 0]
    torch.testing.assert_close(res.bboxes[1], torch.tensor([8., -1., 16.,
                                                            7.]))

    res = head.predict_by_feat(
        cls, pts, [meta], cfg=dict(score_thr=0.58, nms_radius=0))[0]
    torch.testing.assert_close(res.scores, torch.tensor([0.9, 0.6]))


def test_predict_point_nms_effect():
    """Three nuclei 5 px apart in a row and one far away: radius 12 keeps
    the best of the row and the far one; radius 4 keeps all."""
    head = make_head()
    cls = _logits([0.7, 0.9, 0.8, 0.6]).reshape(1, 1, 4, 2)
    pts = torch.tensor([[[[10., 10.], [15., 10.], [20., 10.], [60., 10.]]]])
    meta = dict(img_shape=(64, 64))
    res = head.predict_by_feat(cls, pts, [meta], cfg=dict(nms_radius=12))[0]
    torch.testing.assert_close(res.points, torch.tensor([[15., 10.],
                                                         [60., 10.]]))
    res = head.predict_by_feat(cls, pts, [meta], cfg=dict(nms_radius=4))[0]
    assert len(res) == 4


def test_predict_mask_filter_effect():
    head = make_head(test_cfg=dict(nms_radius=0))
    cls = _logits([0.9, 0.8, 0.7]).reshape(1, 1, 3, 2)
    # The 3rd point is at (5.4, 2.6): pixel column 5, row 3.
    pts = torch.tensor([[[[1., 1.], [6., 1.], [5.4, 2.6]]]])
    mask = torch.zeros(1, 8, 8)
    mask[0, :, :4] = 0.9  # foreground on the left
    mask[0, 3, 5] = 0.6
    meta = dict(img_shape=(8, 8))
    res = head.predict_by_feat(cls, pts, [meta], mask_probs=mask)[0]
    torch.testing.assert_close(res.points, torch.tensor([[1., 1.], [5.4,
                                                                    2.6]]))
    res = head.predict_by_feat(
        cls, pts, [meta], cfg=dict(nms_radius=0, mask_thr=0.7),
        mask_probs=mask)[0]
    torch.testing.assert_close(res.points, torch.tensor([[1., 1.]]))
    res = head.predict_by_feat(cls, pts, [meta])[0]
    assert len(res) == 3


def test_predict_rescale_to_original_frame():
    head = make_head(test_cfg=dict(nms_radius=0))
    cls = _logits([0.9, 0.8]).reshape(1, 1, 2, 2)
    pts = torch.tensor([[[[9.5, 3.5], [37.5, 17.5]]]])
    # Image resized 2x (w) and 4x (h): x = (x' + .5) / 2 - .5.
    meta = dict(
        img_shape=(20, 40), ori_shape=(5, 20), scale_factor=(2., 4.))
    res = head.predict_by_feat(cls, pts, [meta], rescale=True)[0]
    torch.testing.assert_close(res.points,
                               torch.tensor([[4.5, 0.5], [18.5, 4.0]]))
    res = head.predict_by_feat(cls, pts, [meta], rescale=False)[0]
    torch.testing.assert_close(res.points, pts[0, 0])


def test_predict_batch_and_empty():
    head = make_head()
    x = pyramid(3, 16, 24)
    samples = [
        DetDataSample(metainfo=dict(img_shape=(16, 24), ori_shape=(16, 24),
                                    scale_factor=(1., 1.),
                                    batch_input_shape=(16, 24)))
        for _ in range(3)
    ]
    results = head.predict(x, samples, rescale=True)
    assert len(results) == 3
    for res in results:
        assert set(res.keys()) == {'points', 'scores', 'labels', 'bboxes'}
        assert res.points.shape[1] == 2 and res.bboxes.shape[1] == 4
    # Everything background -> empty but well-formed.
    cls = _logits([0.1, 0.2]).reshape(1, 1, 2, 2)
    res = head.predict_by_feat(cls, torch.zeros(1, 1, 2, 2),
                               [dict(img_shape=(8, 16))])[0]
    assert res.points.shape == (0, 2) and res.bboxes.shape == (0, 4)


def test_bad_config_values_raise():
    with pytest.raises(ValueError, match='feat_levels'):
        make_head(feat_levels=(0, 4))
    with pytest.raises(ValueError, match='use_sigmoid'):
        make_head(loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True))
