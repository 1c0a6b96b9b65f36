import numpy as np
import pytest

from pns_mmdet.evaluation.functional import (instance_classes,
                                             paint_instance_masks,
                                             remap_label)


def test_remap_label_order_of_unique_without_background():
    # no 0 in the map: HoVer-Net's remap_label crashes here
    out = remap_label(np.array([[5, 5], [3, 9]], np.uint16))
    np.testing.assert_array_equal(out, [[2, 2], [1, 3]])
    assert out.dtype == np.int32


def test_remap_label_by_size_and_empty():
    inst = np.array([[5, 5, 5, 0], [3, 9, 9, 0]])
    # areas: 5 -> 3, 9 -> 2, 3 -> 1
    np.testing.assert_array_equal(
        remap_label(inst, by_size=True), [[1, 1, 1, 0], [3, 2, 2, 0]])
    np.testing.assert_array_equal(
        remap_label(inst), [[2, 2, 2, 0], [1, 3, 3, 0]])
    np.testing.assert_array_equal(remap_label(np.zeros((2, 2), np.int8)),
                                  np.zeros((2, 2)))
    big = np.where(inst > 0, inst * 10**10, 0)
    np.testing.assert_array_equal(remap_label(big), remap_label(inst))


def test_paint_later_wins_and_ids_follow_input_index():
    masks = np.zeros((3, 2, 4), bool)
    masks[0, :, :3] = True
    masks[1, :, 2:] = True
    masks[2, 0, 0] = True
    # given order: mask 2 painted last
    np.testing.assert_array_equal(
        paint_instance_masks(masks), [[3, 1, 2, 2], [1, 1, 2, 2]])
    # paint order 2, 1, 0: mask 0 wins everywhere it covers
    inst, cls = paint_instance_masks(masks, np.array([2, 1, 0]),
                                     labels=np.array([4, 0, 1]))
    np.testing.assert_array_equal(inst, [[1, 1, 1, 2], [1, 1, 1, 2]])
    np.testing.assert_array_equal(cls, [[5, 5, 5, 1], [5, 5, 5, 1]])
    empty = paint_instance_masks(np.zeros((0, 2, 3), bool))
    assert empty.shape == (2, 3) and not empty.any()
    with pytest.raises(ValueError, match='permutation'):
        paint_instance_masks(masks, np.array([0, 0, 1]))


def test_instance_classes_majority_vote():
    inst = np.array([[1, 1, 1, 0], [7, 7, 0, 0]])
    cls = np.array([[2, 2, 3, 1], [1, 0, 0, 0]])
    ids, classes = instance_classes(inst, cls)
    np.testing.assert_array_equal(ids, [1, 7])
    # instance 7: one pixel class 1, one unlabelled -> tie -> smaller (0)
    np.testing.assert_array_equal(classes, [2, 0])
    with pytest.raises(ValueError, match='shape'):
        instance_classes(inst, cls[:, :3])


@pytest.mark.parametrize('dtype', [bool, np.uint8, np.int32, np.float32])
def test_paint_word_scan_matches_flatnonzero(dtype):
    from pns_mmdet.evaluation.functional.instance_map import _flat_nonzero
    rng = np.random.default_rng(0)
    # sizes that are and are not multiples of the 8-byte word
    for shape in ((3, 5, 7), (2, 8, 8), (1, 1, 1), (0, 4, 4)):
        masks = (rng.random(shape) < 0.2).astype(dtype)
        np.testing.assert_array_equal(_flat_nonzero(masks),
                                      np.flatnonzero(masks))
    masks = (rng.random((6, 9, 11)) < 0.3).astype(dtype)
    order = rng.permutation(6)
    want = np.zeros((9, 11), np.int32)
    for i in order:  # the obvious painter
        want[masks[i] != 0] = i + 1
    np.testing.assert_array_equal(paint_instance_masks(masks, order), want)
