"""Tests for pns_mmdet.datasets.coco_utils (RLE, validation, polygons)."""
import numpy as np
import pycocotools.mask as mask_utils
import pytest

from pns_mmdet.datasets.coco_utils import (annotations_to_instance_map,
                                           encode_instance_rle, fill_polygon,
                                           instance_classes_from_class_map,
                                           instance_map_to_annotations,
                                           polygons_to_instance_map,
                                           rle_counts, validate_segmentation)


def _runs(mask: np.ndarray) -> list:
    """Column-major run lengths starting with background (COCO RLE)."""
    flat = mask.T.ravel()
    runs, cur, cnt = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(cnt)
            cnt, cur = 0, v
        cnt += 1
    runs.append(cnt)
    return runs


def test_encode_matches_pycocotools_and_counts_decoder():
    rng = np.random.default_rng(0)
    for _ in range(100):
        h, w = rng.integers(1, 30, 2)
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        ys, xs = np.nonzero(m)
        rle = encode_instance_rle(ys, xs, h, w)
        ref = mask_utils.encode(np.asfortranarray(m))
        assert rle['counts'] == ref['counts'].decode()
        assert rle['size'] == [h, w]
        assert rle_counts(rle['counts']).tolist() == _runs(m)


def test_rle_hand_case():
    m = np.zeros((3, 4), np.uint8)
    m[0, 0] = 1  # column-major: 1 fg, then 2 bg, then col 1: rows 1-2 fg
    m[1:3, 1] = 1
    ys, xs = np.nonzero(m)
    rle = encode_instance_rle(ys, xs, 3, 4)
    assert rle_counts(rle['counts']).tolist() == [0, 1, 3, 2, 6]


def test_validate_segmentation_errors():
    m = np.zeros((10, 10), np.uint8)
    m[2:5, 3:7] = 1
    good = encode_instance_rle(*np.nonzero(m), 10, 10)
    validate_segmentation(good, 10, 10, 'x')  # no error
    validate_segmentation([[0, 0, 5, 0, 5, 5]], 10, 10, 'x')
    validate_segmentation({'size': [10, 10], 'counts': _runs(m)}, 10, 10, 'x')
    where = 'a.json: image 3, annotation 17'
    with pytest.raises(ValueError, match='image 3, annotation 17.*sum to'):
        validate_segmentation(dict(good, counts=good['counts'][:-2]), 10, 10,
                              where)
    # 'P' has the continuation bit set: a number cut in the middle.
    with pytest.raises(ValueError, match='annotation 17.*truncated'):
        validate_segmentation(dict(good, counts=good['counts'] + 'P'), 10, 10,
                              where)
    with pytest.raises(ValueError, match='annotation 17.*sum to'):
        validate_segmentation(dict(good, counts=good['counts'] + '11'), 10, 10,
                              where)
    with pytest.raises(ValueError, match='annotation 17.*does not match'):
        validate_segmentation(good, 10, 12, where)
    with pytest.raises(ValueError, match='annotation 17.*sum to'):
        validate_segmentation({
            'size': [10, 10],
            'counts': [5, 3]
        }, 10, 10, where)
    with pytest.raises(ValueError, match='annotation 17.*polygon'):
        validate_segmentation([[0, 0, 5, 0]], 10, 10, where)
    with pytest.raises(ValueError, match='annotation 17.*alphabet'):
        validate_segmentation(dict(good, counts='!!'), 10, 10, where)


def test_fill_polygon_rules_hand_computed():
    # Square with integer corners (1,1)-(3,3): skimage (boundary inside)
    # fills the 3x3 block; half-open PNPOLY only rows/cols 1..2.
    rows = np.array([1, 1, 3, 3])
    cols = np.array([1, 3, 3, 1])
    rr, cc = fill_polygon(rows, cols, (6, 6))
    m = np.zeros((6, 6), int)
    m[rr, cc] = 1
    exp = np.zeros((6, 6), int)
    exp[1:4, 1:4] = 1
    np.testing.assert_array_equal(m, exp)
    rr, cc = fill_polygon(rows, cols, (6, 6), rule='pnpoly')
    m[:] = 0
    m[rr, cc] = 1
    exp[:] = 0
    exp[1:3, 1:3] = 1
    np.testing.assert_array_equal(m, exp)
    # Clipped to the shape, negative coordinates dropped.
    rr, cc = fill_polygon(np.array([-2, -2, 1, 1]), np.array([-2, 8, 8, -2]),
                          (4, 5))
    assert rr.min() == 0 and cc.min() == 0 and cc.max() == 4
    assert rr.max() == 1 and len(rr) == 10


def test_overlapping_polygons_roundtrip_exact():
    polys = [
        np.array([[2, 2], [12, 2], [12, 12], [2, 12]], float),
        np.array([[8, 8], [16, 8], [16, 16], [8, 16]], float),  # overlaps
        np.array([[30, 30], [31, 30], [31, 31]], float),
    ]
    inst = polygons_to_instance_map(polys, (20, 20))
    # later polygon overwrites: pixel (10, 10) belongs to the second one
    assert inst[10, 10] == 2 and inst[3, 3] == 1
    assert inst.max() == 2  # third polygon is outside the image
    anns = instance_map_to_annotations(inst, 1, 1)
    assert [a['inst_id'] for a in anns] == [1, 2]
    assert anns[0]['bbox'] == [2.0, 2.0, 11.0, 11.0]
    assert anns[0]['area'] == int((inst == 1).sum())
    back = annotations_to_instance_map(anns, 20, 20)
    np.testing.assert_array_equal(back, inst)


def test_instance_map_roundtrip_random():
    rng = np.random.default_rng(1)
    inst = rng.integers(0, 7, (23, 31)).astype(np.int32)
    inst[inst == 3] = 0  # a gap in the ids
    anns = instance_map_to_annotations(inst, 5, 100,
                                       {i: 1 + i % 2
                                        for i in range(7)})
    assert [a['id'] for a in anns] == list(range(100, 100 + len(anns)))
    assert all(a['image_id'] == 5 for a in anns)
    assert [a['category_id'] for a in anns] == [2, 1, 1, 2, 1]
    np.testing.assert_array_equal(annotations_to_instance_map(anns, 23, 31),
                                  inst)


def test_classes_from_class_map_majority_and_errors():
    inst = np.array([[1, 1, 1, 2], [0, 0, 2, 2]])
    cls = np.array([[3, 3, 1, 2], [0, 0, 2, 0]])
    assert instance_classes_from_class_map(inst, cls) == {1: 3, 2: 2}
    with pytest.raises(ValueError, match='instances \\[2\\] have no class'):
        instance_classes_from_class_map(inst, np.where(inst == 2, 0, cls),
                                        'm.png')
    with pytest.raises(ValueError, match='shape'):
        instance_classes_from_class_map(inst, cls[:1])
