"""Tests for the nucleus transforms: points, packing, augmentations."""
import copy

import numpy as np
import pytest
import torch
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks
from mmengine.registry import init_default_scope

from pns_mmdet.datasets.transforms import (NucleusPointsFromMasks,
                                           PackNucleusInputs, RandomBlur,
                                           RandomColorJitter, RandomDownscale,
                                           RandomGaussianNoise, RandomRotate90,
                                           RandomShiftScale)
from pns_mmdet.datasets.transforms.nucleus_points import mask_points


def _results(masks: np.ndarray, labels=None) -> dict:
    n, h, w = masks.shape
    boxes = np.zeros((n, 4), np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(xs):
            boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    rng = np.random.default_rng(0)
    return dict(img=rng.integers(0, 256, (h, w, 3), np.uint8),
                img_shape=(h, w),
                ori_shape=(h, w),
                gt_masks=BitmapMasks(masks.astype(np.uint8), h, w),
                gt_bboxes=HorizontalBoxes(boxes),
                gt_bboxes_labels=np.arange(n, dtype=np.int64)
                if labels is None else np.asarray(labels, np.int64),
                gt_ignore_flags=np.zeros(n, bool))


def c_shape(h=20, w=20) -> np.ndarray:
    """A 'C': 9x9 block with a 5x6 notch open to the right."""
    m = np.zeros((h, w), np.uint8)
    m[5:14, 5:14] = 1
    m[7:12, 8:14] = 0
    return m


def test_points_centroid_concave_and_seg_map():
    m0 = np.zeros((20, 20), np.uint8)
    m0[2:5, 10:14] = 1  # 3x4 block: centroid (11.5, 3)
    m1 = c_shape()
    masks = np.stack([m0, m1])
    res = NucleusPointsFromMasks()(_results(masks))
    p = res['gt_points']
    assert p.dtype == np.float32 and p.shape == (2, 2)
    np.testing.assert_allclose(p[0], [11.5, 3.0])
    # C-shape centroid (x ~ 7.7, y = 9) lies in the notch... check exact.
    ys, xs = np.nonzero(m1)
    cx, cy = xs.mean(), ys.mean()
    assert m1[int(np.floor(cy + .5)), int(np.floor(cx + .5))] == 0
    x, y = p[1]
    assert x == int(x) and y == int(y) and m1[int(y), int(x)] == 1
    # nearest interior pixel to the centroid
    d = (xs - cx)**2 + (ys - cy)**2
    assert (x - cx)**2 + (y - cy)**2 == pytest.approx(d.min())
    np.testing.assert_array_equal(res['gt_seg_map'], (m0 | m1))
    assert res['gt_seg_map'].dtype == np.uint8
    np.testing.assert_array_equal(res['gt_bboxes'].numpy(),
                                  [[10, 2, 14, 5], [5, 5, 14, 14]])


def test_points_never_drop_nonempty_but_drop_empty_consistently():
    masks = np.zeros((4, 16, 16), np.uint8)
    masks[0, 3, 3] = 1  # single pixel nucleus: kept
    masks[2, 8:10, 8:12] = 1
    masks[3, 15, 0] = 1  # corner pixel
    res = _results(masks, labels=[5, 6, 7, 8])
    res['gt_ignore_flags'][3] = True
    out = NucleusPointsFromMasks()(res)
    assert len(out['gt_masks']) == 3
    np.testing.assert_array_equal(out['gt_bboxes_labels'], [5, 7, 8])
    np.testing.assert_array_equal(out['gt_ignore_flags'], [False, False, True])
    np.testing.assert_allclose(out['gt_points'], [[3, 3], [9.5, 8.5], [0, 15]])
    assert len(out['gt_bboxes']) == 3
    # no instances at all
    empty = NucleusPointsFromMasks()(_results(np.zeros((0, 8, 9), np.uint8)))
    assert empty['gt_points'].shape == (0, 2)
    assert empty['gt_seg_map'].shape == (8, 9)
    # inference without annotations: no-op
    out = NucleusPointsFromMasks()(dict(img=np.zeros((4, 4, 3))))
    assert set(out) == {'img'}
    # boxes without masks: LoadAnnotations forgot with_mask
    with pytest.raises(KeyError, match='with_mask=True'):
        NucleusPointsFromMasks()(
            dict(gt_bboxes=HorizontalBoxes(np.ones((1, 4), np.float32))))


def test_mask_points_random_vs_bruteforce():
    rng = np.random.default_rng(3)
    masks = (rng.random((30, 24, 17)) < 0.08).astype(np.uint8)
    pts, boxes, areas, union = mask_points(masks)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        assert areas[i] == len(xs)
        if not len(xs):
            assert np.isnan(pts[i]).all()
            continue
        x, y = pts[i]
        cx, cy = xs.mean(), ys.mean()
        if m[int(np.floor(cy + .5)), int(np.floor(cx + .5))]:
            np.testing.assert_allclose([x, y], [cx, cy], rtol=1e-6)
        else:
            assert m[int(y), int(x)] == 1
        np.testing.assert_array_equal(
            boxes[i],
            [xs.min(), ys.min(),
             xs.max() + 1, ys.max() + 1])
    np.testing.assert_array_equal(union, masks.any(0))


def _points_of(res):
    return NucleusPointsFromMasks()(res)['gt_points']


@pytest.mark.parametrize('flip_type', ['RandomFlip', 'RandomNucleusFlip'])
@pytest.mark.parametrize('direction', ['horizontal', 'vertical', 'diagonal'])
def test_points_follow_masks_under_flips(direction, flip_type):
    init_default_scope('mmdet')
    from mmdet.registry import TRANSFORMS
    h, w = 20, 24
    convex = np.zeros((2, h, w), np.uint8)
    convex[0, 2:7, 1:4] = 1
    convex[1, 11:18, 15:23] = 1
    flip = TRANSFORMS.build(dict(type=flip_type, prob=1.0,
                                 direction=direction))
    # RandomNucleusFlip gives exactly mmdet's RandomFlip results
    ref = TRANSFORMS.build(
        dict(type='RandomFlip', prob=1.0, direction=direction))
    a, b = flip(_results(convex)), ref(_results(convex))
    np.testing.assert_array_equal(a['gt_masks'].masks, b['gt_masks'].masks)
    np.testing.assert_array_equal(a['img'], b['img'])
    np.testing.assert_array_equal(a['gt_bboxes'].numpy(),
                                  b['gt_bboxes'].numpy())
    np.testing.assert_array_equal(a['homography_matrix'],
                                  b['homography_matrix'])
    assert a['flip'] and a['flip_direction'] == direction
    base = _points_of(_results(convex))
    out = _points_of(flip(_results(convex)))
    exp = base.copy()
    if direction in ('horizontal', 'diagonal'):
        exp[:, 0] = w - 1 - exp[:, 0]
    if direction in ('vertical', 'diagonal'):
        exp[:, 1] = h - 1 - exp[:, 1]
    np.testing.assert_allclose(out, exp, atol=1e-5)
    # Concave nucleus: the point is an interior pixel of the flipped mask
    # at minimal distance from the flipped centroid.
    res = flip(_results(np.stack([c_shape(h, w)])))
    (x, y), = _points_of(res)
    m = res['gt_masks'].masks[0]
    ys, xs = np.nonzero(m)
    d = (xs - xs.mean())**2 + (ys - ys.mean())**2
    assert m[int(y), int(x)] == 1
    assert (x - xs.mean())**2 + (y - ys.mean())**2 == pytest.approx(d.min())


@pytest.mark.parametrize('k', [1, 2, 3])
def test_rot90_exact_masks_boxes_points(k):
    h, w = 18, 25
    m0 = np.zeros((h, w), np.uint8)
    m0[2:6, 3:10] = 1  # centroid inside: rotates exactly
    m1 = np.zeros((h, w), np.uint8)
    m1[10:13, 20:24] = 1
    masks = np.stack([m0, m1])
    res = _results(masks)
    res['gt_seg_map'] = masks.any(0).astype(np.uint8)
    img = res['img'].copy()
    base = _points_of(_results(masks))
    t = RandomRotate90(prob=1.0, ks=(k, ))
    out = t(res)
    assert out['rot90_k'] == k
    np.testing.assert_array_equal(out['img'], np.rot90(img, k))
    assert out['img_shape'] == out['img'].shape[:2]
    rot = np.rot90(masks, k, axes=(1, 2))
    np.testing.assert_array_equal(out['gt_masks'].masks, rot)
    np.testing.assert_array_equal(out['gt_seg_map'], rot.any(0))
    # boxes transformed analytically equal the tight boxes of rotated masks
    tight = mask_points(rot)[1]
    np.testing.assert_allclose(out['gt_bboxes'].numpy(), tight)
    # points follow: (x, y) -> (y, W - 1 - x) per quarter turn
    exp = base.copy()
    ww, hh = w, h
    for _ in range(k):
        exp = np.stack([exp[:, 1], ww - 1 - exp[:, 0]], 1)
        ww, hh = hh, ww
    np.testing.assert_allclose(_points_of(out), exp, atol=1e-5)


def test_rot90_prob_zero_is_identity():
    res = _results(np.stack([c_shape()]))
    img = res['img'].copy()
    out = RandomRotate90(prob=0.0)(res)
    assert out['rot90_k'] == 0
    np.testing.assert_array_equal(out['img'], img)


def test_shift_scale_masks_consistent():
    np.random.seed(0)
    h, w = 40, 48
    masks = np.zeros((3, h, w), np.uint8)
    masks[0, 5:12, 5:15] = 1
    masks[1, 20:30, 30:40] = 1
    masks[2, 38:40, 46:48] = 1
    res = _results(masks)
    res['gt_seg_map'] = masks.any(0).astype(np.uint8)
    t = RandomShiftScale(prob=1.0, max_shift=0.3, scale_range=(0.9, 1.1))
    out = t(res)
    assert out['img'].shape == (h, w, 3) and out['img'].dtype == np.uint8
    wm = out['gt_masks'].masks
    assert wm.shape == (3, h, w)
    # boxes are the tight boxes of the warped masks (zeros when empty)
    np.testing.assert_allclose(out['gt_bboxes'].numpy(), mask_points(wm)[1])
    # areas scale roughly with s^2 for nuclei that stay inside
    assert abs(int(wm[0].sum()) - 70) <= 30
    # the crop-wise warp equals a full-image nearest warp
    import cv2
    np.random.seed(0)
    np.random.rand()
    s_mat = t._matrix(h, w)
    full = cv2.warpAffine(masks[1], s_mat, (w, h), flags=cv2.INTER_NEAREST)
    assert (full != wm[1]).sum() <= 2
    pts = NucleusPointsFromMasks()(out)['gt_points']
    assert len(pts) == len(out['gt_masks']) >= 2
    for p, m in zip(pts, out['gt_masks'].masks):
        assert m[int(np.floor(p[1] + .5)), int(np.floor(p[0] + .5))] == 1


@pytest.mark.parametrize('t', [
    RandomColorJitter(prob=1.0),
    RandomColorJitter(prob=1.0, channel_order='rgb'),
    RandomBlur(prob=1.0),
    RandomGaussianNoise(prob=1.0),
    RandomDownscale(prob=1.0, scale_range=(0.25, 0.5)),
])
def test_photometric_keep_uint8_shape_and_masks(t):
    np.random.seed(1)
    res = _results(np.stack([c_shape(32, 40)]))
    masks = res['gt_masks'].masks.copy()
    out = t(res)
    assert out['img'].dtype == np.uint8 and out['img'].shape == (32, 40, 3)
    np.testing.assert_array_equal(out['gt_masks'].masks, masks)
    with pytest.raises(TypeError, match='uint8'):
        t(dict(img=np.zeros((4, 4, 3), np.float32)))


def test_photometric_hand_cases():
    flat = dict(img=np.full((9, 9, 3), 100, np.uint8))
    np.random.seed(0)
    out = RandomBlur(prob=1.0)(dict(flat))
    np.testing.assert_array_equal(out['img'], flat['img'])
    out = RandomGaussianNoise(prob=1.0, var_range=(0., 0.))(dict(flat))
    np.testing.assert_array_equal(out['img'], flat['img'])
    img = np.zeros((4, 4, 3), np.uint8)
    img[:2, :2] = 200  # nearest down x0.5 keeps pixel (0,0) of each 2x2
    out = RandomDownscale(prob=1.0)(dict(img=img))['img']
    np.testing.assert_array_equal(out, img)
    # grey image: saturation/hue jitter leave it grey; brightness scales
    grey = dict(img=np.full((3, 3, 3), 100, np.uint8))
    out = RandomColorJitter(prob=1.0,
                            brightness=0.0,
                            contrast=0.0,
                            saturation=0.1,
                            hue=0.05)(dict(grey))['img']
    np.testing.assert_array_equal(out, grey['img'])
    for bad in (dict(prob=1.5), dict(hue=0.7)):
        with pytest.raises(ValueError):
            RandomColorJitter(**bad)


def test_pack_nucleus_inputs():
    masks = np.stack([c_shape(), np.roll(c_shape(), 5, axis=0)])
    res = _results(masks, labels=[2, 4])
    res['gt_ignore_flags'][1] = True
    res.update(img_id=7,
               img_path='x.png',
               scale_factor=(1., 1.),
               flip=False,
               flip_direction=None,
               tissue='Colon')
    res = NucleusPointsFromMasks()(res)
    packed = PackNucleusInputs()(res)
    ds = packed['data_samples']
    assert packed['inputs'].shape == (3, 20, 20)
    assert packed['inputs'].dtype == torch.uint8
    gi = ds.gt_instances
    assert gi.points.dtype == torch.float32 and gi.points.shape == (1, 2)
    np.testing.assert_allclose(gi.points.numpy(), res['gt_points'][:1])
    assert gi.labels.tolist() == [2]
    assert ds.ignored_instances.points.shape == (1, 2)
    assert ds.gt_sem_seg.sem_seg.shape == (1, 20, 20)
    assert ds.gt_sem_seg.sem_seg.dtype == torch.uint8
    assert ds.metainfo['tissue'] == 'Colon' and ds.metainfo['img_id'] == 7


def test_load_nucleus_annotations_equals_mmdet(tmp_path):
    """Same masks, boxes, labels and flags as mmdet's LoadAnnotations for
    compressed RLE, uncompressed RLE, polygons and an invalid polygon."""
    import pycocotools.mask as mask_utils

    from pns_mmdet.datasets.transforms import LoadNucleusAnnotations
    init_default_scope('mmdet')
    from mmdet.registry import TRANSFORMS
    h, w = 30, 40
    m = np.zeros((h, w), np.uint8, order='F')
    m[3:9, 5:12] = 1
    m[20, 39] = 1
    rle = mask_utils.encode(m)
    rle_str = dict(size=[h, w], counts=rle['counts'].decode())
    flat = m.T.ravel()
    change = np.flatnonzero(np.diff(np.r_[0, flat, 1 - flat[-1]]))
    runs = np.diff(np.r_[0, change]).tolist()
    instances = [
        dict(bbox=[5, 3, 40, 21], bbox_label=0, ignore_flag=0, mask=rle_str),
        dict(bbox=[5, 3, 40, 21],
             bbox_label=1,
             ignore_flag=0,
             mask=dict(size=[h, w], counts=runs)),
        dict(bbox=[1, 1, 20, 25],
             bbox_label=2,
             ignore_flag=0,
             mask=[[1.5, 1, 20, 2, 18.7, 25, 2, 20]]),
        dict(bbox=[1, 1, 2, 2], bbox_label=0, ignore_flag=0, mask=[[1, 1]]),
    ]
    res = dict(ori_shape=(h, w), instances=instances, img_path='x.png')
    ours = LoadNucleusAnnotations(with_bbox=True,
                                  with_mask=True)(copy.deepcopy(res))
    ref = TRANSFORMS.build(
        dict(type='LoadAnnotations', with_bbox=True,
             with_mask=True))(copy.deepcopy(res))
    np.testing.assert_array_equal(ours['gt_masks'].masks,
                                  ref['gt_masks'].masks)
    np.testing.assert_array_equal(ours['gt_masks'].masks[0], m)
    np.testing.assert_array_equal(ours['gt_masks'].masks[1], m)
    np.testing.assert_array_equal(ours['gt_ignore_flags'],
                                  [False, False, False, True])
    np.testing.assert_array_equal(ours['gt_bboxes_labels'],
                                  ref['gt_bboxes_labels'])
    bad = copy.deepcopy(res)
    bad['instances'][0]['mask'] = dict(size=[h, w], counts='P')
    with pytest.raises(ValueError, match='x.png: instance 0'):
        LoadNucleusAnnotations(with_bbox=True, with_mask=True)(bad)


def test_pack_fast_path_equals_parent():
    from mmdet.datasets.transforms import PackDetInputs
    masks = np.stack([c_shape(), np.roll(c_shape(), 5, axis=1)])
    res = NucleusPointsFromMasks()(_results(masks))
    ours = PackNucleusInputs()(dict(res))['data_samples']
    ref = PackDetInputs()(dict(res))['data_samples']
    assert 'gt_masks' in res  # the caller's dict is left intact
    np.testing.assert_array_equal(ours.gt_instances.masks.masks,
                                  ref.gt_instances.masks.masks)
    assert len(ours.ignored_instances.masks) == 0
    assert ours.ignored_instances.masks.masks.shape == (0, 20, 20)
    assert ours.gt_instances.points.shape == (2, 2)
    np.testing.assert_array_equal(ours.gt_instances.labels,
                                  ref.gt_instances.labels)


def test_mask_ops_match_numpy():
    from pns_mmdet.datasets.transforms.mask_ops import (flip_masks, mask_boxes,
                                                        rot90_masks)
    rng = np.random.default_rng(5)
    masks = np.zeros((5, 13, 17), np.uint8)
    masks[0, 0:3, 14:17] = rng.integers(0, 2, (3, 3))
    masks[1, 5:13, 0:4] = 1
    masks[3] = rng.integers(0, 2, (13, 17))
    masks[4, 12, 16] = 1
    for k in range(4):
        np.testing.assert_array_equal(rot90_masks(masks, k),
                                      np.rot90(masks, k, axes=(1, 2)))
    np.testing.assert_array_equal(flip_masks(masks, 'horizontal'),
                                  masks[:, :, ::-1])
    np.testing.assert_array_equal(flip_masks(masks, 'vertical'),
                                  masks[:, ::-1])
    np.testing.assert_array_equal(flip_masks(masks, 'diagonal'),
                                  masks[:, ::-1, ::-1])
    boxes = mask_boxes(masks)
    assert boxes[2] is None and boxes[1] == (5, 13, 0, 4)
    assert boxes[4] == (12, 13, 16, 17)
