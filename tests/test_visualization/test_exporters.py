"""Exporters: exact polygons, QuPath GeoJSON, COCO JSON, PNG maps, overlay."""
import json

import cv2
import numpy as np
import pytest
import shapely
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from shapely import geometry

from pns_mmdet.visualization import (CocoResultsWriter,
                                     class_map_from_labels,
                                     draw_instance_contours,
                                     instance_boundaries,
                                     instance_geometries, instance_map_to_rles,
                                     instances_to_geojson, mask_to_geometry,
                                     save_class_png, save_geojson,
                                     save_instance_png)


def rasterise(geom, shape):
    """Pixels whose centre lies inside the polygon."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    pts = shapely.points(xx.ravel() + 0.5, yy.ravel() + 0.5)
    return shapely.contains(geom, pts).reshape(h, w)


def example_map():
    inst = np.zeros((12, 14), np.int32)
    inst[1:5, 1:6] = 1  # rectangle
    inst[6:11, 2:7] = 2
    inst[8, 4] = 0  # hole in 2
    inst[2:4, 9:11] = 3
    inst[5, 12] = 3  # second part of 3 (diagonal gap)
    inst[9:11, 11:14] = 5  # id 4 absent (hidden instance)
    return inst


def test_mask_to_geometry_exact_pixels():
    m = np.zeros((4, 5), bool)
    m[1:3, 1:4] = True
    g = mask_to_geometry(m, offset=(10, 20))
    assert g.equals(geometry.box(11, 21, 14, 23))
    assert len(g.exterior.coords) == 5  # collinear vertices removed
    assert mask_to_geometry(np.zeros((3, 3), bool)).is_empty


def test_instance_geometries_roundtrip_holes_and_parts():
    inst = example_map()
    geoms = instance_geometries(inst)
    assert sorted(geoms) == [1, 2, 3, 5]
    for i, g in geoms.items():
        assert g.is_valid
        assert g.area == (inst == i).sum()
        assert np.array_equal(rasterise(g, inst.shape), inst == i)
    assert len(geoms[2].interiors) == 1
    assert geoms[3].geom_type == 'MultiPolygon'


def test_geojson_qupath_layout_and_ids(tmp_path):
    inst = example_map()
    labels = [0, 1, 0, 1, 1]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    fc = instances_to_geojson(inst, labels, scores, ['tumour', 'immune'],
                              [(255, 0, 0), (0, 0, 255)], 'img.png')
    path = tmp_path / 'x.geojson'
    save_geojson(fc, str(path))
    loaded = json.loads(path.read_text())
    assert loaded['type'] == 'FeatureCollection'
    feats = loaded['features']
    ids = [f['properties']['measurements']['Instance ID'] for f in feats]
    assert ids == [1, 2, 3, 5]
    f5 = feats[3]
    assert f5['type'] == 'Feature'
    assert f5['properties']['objectType'] == 'detection'
    assert f5['properties']['classification'] == {
        'name': 'immune',
        'color': [0, 0, 255]
    }
    assert f5['properties']['measurements']['Score'] == 0.5
    assert f5['properties']['measurements']['Area px'] == 6
    for f in feats:
        g = geometry.shape(f['geometry'])
        assert g.is_valid
        i = f['properties']['measurements']['Instance ID']
        assert np.array_equal(rasterise(g, inst.shape), inst == i)
        # Closed rings.
        rings = f['geometry']['coordinates']
        if f['geometry']['type'] == 'MultiPolygon':
            rings = [r for poly in rings for r in poly]
        assert all(r[0] == r[-1] for r in rings)
    # Stable ids for the same image and instance.
    again = instances_to_geojson(inst, labels, scores, ['tumour', 'immune'],
                                 [(255, 0, 0), (0, 0, 255)], 'img.png')
    assert [f['id'] for f in again['features']] == [f['id'] for f in feats]


def test_geojson_rejects_bad_labels():
    inst = example_map()
    with pytest.raises(ValueError, match='labels must lie'):
        instances_to_geojson(inst, [0, 1, 2, 0, 0], [1.] * 5, ['a', 'b'],
                             [(0, 0, 0)] * 2)
    with pytest.raises(ValueError, match='only 3 labels'):
        instances_to_geojson(inst, [0, 0, 0], [1.] * 3, ['a'], [(0, 0, 0)])


def test_empty_map_gives_empty_outputs(tmp_path):
    inst = np.zeros((5, 6), np.int32)
    fc = instances_to_geojson(inst, [], [], ['a'], [(1, 2, 3)])
    assert fc == {'type': 'FeatureCollection', 'features': []}
    writer = CocoResultsWriter(['a'])
    assert writer.add('e.png', inst, [], []) == 0
    writer.dump(str(tmp_path / 'c.json'))
    coco = COCO(str(tmp_path / 'c.json'))
    assert coco.getImgIds() == [1] and coco.getAnnIds() == []


def test_rles_match_pycocotools():
    rng = np.random.default_rng(0)
    for _ in range(5):
        inst = rng.integers(0, 6, (9, 11))
        for i, rle in instance_map_to_rles(inst).items():
            ref = mask_utils.encode(
                np.asfortranarray((inst == i).astype(np.uint8)))
            assert rle['counts'] == ref['counts'].decode()
            assert rle['size'] == [9, 11]


def test_coco_json_loads_and_decodes(tmp_path):
    inst = example_map()
    writer = CocoResultsWriter(['tumour', 'immune'])
    assert writer.add('a.png', inst, [0, 1, 0, 1, 1], [.9, .8, .7, .6, .5]) \
        == 4
    writer.add('b.png', np.zeros((3, 3), np.int32), [], [])
    path = tmp_path / 'pred.json'
    writer.dump(str(path))
    coco = COCO(str(path))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == [
        'tumour', 'immune'
    ]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert len(anns) == 4
    for ann in anns:
        i = ann['instance_id']
        assert np.array_equal(coco.annToMask(ann), inst == i)
        assert ann['area'] == (inst == i).sum()
    ann5 = [a for a in anns if a['instance_id'] == 5][0]
    assert ann5['category_id'] == 2 and ann5['score'] == 0.5
    assert ann5['bbox'] == [11., 9., 3., 2.]
    # Also usable as detection results against a ground truth.
    res = coco.loadRes(json.loads(path.read_text())['annotations'])
    assert len(res.getAnnIds()) == 4


def test_png_maps_roundtrip(tmp_path):
    inst = example_map().astype(np.int64)
    inst[0, 0] = 70000 - 69000  # ids beyond 255 survive
    save_instance_png(str(tmp_path / 'i.png'), inst)
    back = cv2.imread(str(tmp_path / 'i.png'), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and np.array_equal(back, inst)
    with pytest.raises(ValueError, match='65535'):
        save_instance_png(str(tmp_path / 'j.png'), np.full((2, 2), 70000))
    cls = class_map_from_labels(example_map(), [0, 1, 0, 1, 1])
    assert cls[2, 2] == 1 and cls[7, 3] == 2 and cls[0, 0] == 0
    save_class_png(str(tmp_path / 'c.png'), cls)
    back = cv2.imread(str(tmp_path / 'c.png'), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint8 and np.array_equal(back, cls)


def test_boundaries_and_overlay_colours():
    inst = np.zeros((6, 8), np.int32)
    inst[1:5, 1:4] = 1
    inst[1:5, 4:7] = 2  # touching neighbour
    edge = instance_boundaries(inst)
    assert not edge[2, 2] and edge[1, 1] and edge[2, 3] and edge[2, 4]
    img = np.full((6, 8, 3), 200, np.uint8)
    out = draw_instance_contours(img, inst, [0, 1], [(255, 0, 0),
                                                     (0, 255, 0)])
    assert out[2, 3].tolist() == [255, 0, 0]
    assert out[2, 4].tolist() == [0, 255, 0]
    assert out[2, 2].tolist() == [200, 200, 200]  # interior untouched
    assert out[0, 0].tolist() == [200, 200, 200]
    thick = draw_instance_contours(img, inst, [0, 1], [(255, 0, 0),
                                                       (0, 255, 0)], 2)
    assert thick[2, 2].tolist() == [255, 0, 0]
    assert img[2, 3].tolist() == [200, 200, 200]  # input not modified
    with pytest.raises(ValueError, match='instance map'):
        draw_instance_contours(img, inst[:3], [0, 1], [(0, 0, 0)] * 2)
