"""Slide writers: valid QuPath FeatureCollection and CSV, streamed, atomic."""
import csv
import glob
import gzip
import json
import os
import os.path as osp

import numpy as np
import pytest
import shapely
from scipy import ndimage

from pns_mmdet.datasets.synthetic import generate_tile
from pns_mmdet.visualization.polygons import mask_to_geometry
from pns_mmdet.wsi.measurements import MEASUREMENT_KEYS, nucleus_measurements
from pns_mmdet.wsi.store import NucleusRecord, NucleusStore
from pns_mmdet.wsi.writers import CSV_COLUMNS, write_csv, write_geojson

CLASSES = ('Neoplastic', 'Inflammatory', 'Connective', 'Dead', 'Epithelial')
PALETTE = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0),
           (255, 0, 255))
MODEL_MPP, SCALE = 0.25, 1.37  # level0 = model * SCALE
SLIDE_MPP = MODEL_MPP / SCALE


@pytest.fixture(scope='module')
def store(tmp_path_factory):
    """Nuclei of a synthetic tile as level-0 records in a store."""
    tile = generate_tile(np.random.default_rng(5), size=256)
    inst, rgb = tile['inst_map'], tile['image']
    path = str(tmp_path_factory.mktemp('w') / 'nuclei.db')
    recs = []
    for k, (sy, sx) in enumerate(ndimage.find_objects(inst)):
        mask = ndimage.binary_fill_holes(inst[sy, sx] == k + 1)
        lab, n = ndimage.label(mask)
        if n != 1:
            continue  # keep single-part nuclei: one exterior ring each
        geom = mask_to_geometry(mask, (sx.start, sy.start))
        ys, xs = np.nonzero(mask)
        label = tile['inst_classes'][k + 1] - 1
        recs.append(NucleusRecord(
            id=len(recs) + 1,
            x=(sx.start + xs.mean() + 0.5) * SCALE,
            y=(sy.start + ys.mean() + 0.5) * SCALE,
            box=((sx.start + xs.min()) * SCALE, (sy.start + ys.min()) * SCALE,
                 (sx.start + xs.max() + 1) * SCALE,
                 (sy.start + ys.max() + 1) * SCALE),
            label=label, class_name=CLASSES[label], score=0.9,
            polygon=np.asarray(geom.exterior.coords)[:-1] * SCALE,
            point=((sx.start + xs.mean()) * SCALE,
                   (sy.start + ys.mean()) * SCALE),
            measurements=nucleus_measurements(mask, rgb[sy, sx], MODEL_MPP)))
    assert len(recs) > 20
    with NucleusStore(path, 'w') as s:
        s.add_tile(0, recs[:len(recs) // 2])
        s.add_tile(1, recs[len(recs) // 2:])
    return path


def _strict_json(text):
    def bad(c):
        raise ValueError(f'invalid JSON constant {c}')
    return json.loads(text, parse_constant=bad)


def test_geojson_csv_and_store_agree(store, tmp_path):
    gj, cv = str(tmp_path / 'n.geojson'), str(tmp_path / 'n.csv')
    with NucleusStore(store) as s:
        n = len(s)
        assert write_geojson(s.iter_records(), gj, CLASSES, PALETTE,
                             image_name='slide') == n
        assert write_csv(s.iter_records(), cv) == n
        by_id = {r.id: r for r in s}
    fc = _strict_json(open(gj).read())
    assert fc['type'] == 'FeatureCollection' and len(fc['features']) == n
    with open(cv, newline='') as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(CSV_COLUMNS) + list(MEASUREMENT_KEYS)
    assert len(rows) == n
    uuids = set()
    for feat, row in zip(fc['features'], rows):
        props = feat['properties']
        assert feat['type'] == 'Feature'
        assert props['objectType'] == 'detection'
        rid = props['measurements']['Nucleus ID']
        rec = by_id[rid]
        assert int(row['id']) == rid  # same order and ids everywhere
        assert props['classification'] == {
            'name': CLASSES[rec.label], 'color': list(PALETTE[rec.label])}
        geom = shapely.geometry.shape(feat['geometry'])
        assert geom.is_valid and geom.geom_type == 'Polygon'
        assert geom.exterior.is_ccw  # RFC 7946 / shapely orient(1.0)
        # The CSV area (model-frame pixels x mpp^2) is the polygon's area.
        assert float(row['area_um2']) == pytest.approx(
            geom.area * SLIDE_MPP**2, rel=1e-3)
        assert float(row['x']) == rec.x and row['class_name'] == \
            rec.class_name
        assert geom.contains(shapely.Point(rec.x, rec.y)) or \
            geom.distance(shapely.Point(rec.x, rec.y)) < SCALE
        uuids.add(feat['id'])
    assert len(uuids) == n


def test_gzip_equals_plain(store, tmp_path):
    with NucleusStore(store) as s:
        write_geojson(s, str(tmp_path / 'a.geojson'), CLASSES, PALETTE)
        write_geojson(s, str(tmp_path / 'a.geojson.gz'), CLASSES, PALETTE)
    with gzip.open(tmp_path / 'a.geojson.gz', 'rt') as f:
        zipped = f.read()
    assert zipped == open(tmp_path / 'a.geojson').read()


def _rec(rid, poly, label=0, **meas):
    poly = np.asarray(poly, float)
    return NucleusRecord(id=rid, x=float(poly[:, 0].mean()),
                         y=float(poly[:, 1].mean()),
                         box=(*poly.min(0), *poly.max(0)), label=label,
                         class_name=CLASSES[label], score=0.5,
                         polygon=poly, point=(0.0, 0.0), measurements=meas)


def test_invalid_outline_repaired_and_nan_dropped(tmp_path):
    bowtie = [(0, 0), (10, 10), (10, 0), (0, 10)]  # self-crossing ring
    path = str(tmp_path / 'b.geojson')
    pinched = [(0, 0), (2, 0), (2, 2), (4, 2), (4, 4), (2, 4), (2, 2),
               (0, 2)]  # two squares touching at a corner, one ring
    clockwise = [(0, 0), (0, 4), (4, 4), (4, 0)]
    recs = [_rec(1, bowtie, area_um2=float('nan'), eosin_od=0.2),
            _rec(2, clockwise), _rec(3, pinched)]
    assert write_geojson(iter(recs), path, CLASSES, PALETTE) == 3
    feats = _strict_json(open(path).read())['features']
    geoms = [shapely.geometry.shape(f['geometry']) for f in feats]
    assert all(g.is_valid for g in geoms)
    assert geoms[0].area == pytest.approx(50.0)
    assert geoms[1].area == 16.0 and geoms[1].exterior.is_ccw
    assert geoms[2].geom_type == 'MultiPolygon' and geoms[2].area == 8.0
    assert all(p.exterior.is_ccw for p in geoms[2].geoms)
    assert feats[0]['properties']['measurements'] == {
        'Nucleus ID': 1, 'Score': 0.5, 'eosin_od': 0.2}
    assert write_csv(recs, str(tmp_path / 'b.csv')) == 3
    rows = list(csv.DictReader(open(tmp_path / 'b.csv', newline='')))
    assert rows[0]['area_um2'] == 'nan' and rows[1]['area_um2'] == ''
    assert rows[1]['eosin_od'] == ''


def test_streamed_and_atomic(tmp_path):
    path = str(tmp_path / 'big.geojson')
    seen = []

    def records(n, fail_at=None):
        for i in range(1, n + 1):
            if i == fail_at:
                raise RuntimeError('killed')
            if i == n:  # the temporary file already holds earlier ones
                tmp = glob.glob(osp.join(str(tmp_path), '.big.geojson.tmp-*'))
                seen.append(os.path.getsize(tmp[0]))
            yield _rec(i, [(i, 0), (i + 3, 0), (i + 3, 3)], label=i % 5)

    assert write_geojson(records(3000), path, CLASSES, PALETTE) == 3000
    assert seen[0] > 100_000
    before = open(path).read()
    with pytest.raises(RuntimeError, match='killed'):
        write_geojson(records(3000, fail_at=2000), path, CLASSES, PALETTE)
    assert open(path).read() == before  # the old file is untouched
    assert sorted(os.listdir(tmp_path)) == ['big.geojson']
    stray = _rec(1, [(0, 0), (1, 0), (1, 1)])
    stray.label = 7
    with pytest.raises(ValueError, match='nucleus 1 has label 7'):
        write_geojson([stray], str(tmp_path / 'c.geojson'), CLASSES, PALETTE)
    with pytest.raises(ValueError, match=r"nucleus 2 has measurements \['x"):
        write_csv([_rec(1, [(0, 0), (1, 0), (1, 1)], a=1.0),
                   _rec(2, [(0, 0), (1, 0), (1, 1)], x_extra=2.0)],
                  str(tmp_path / 'c.csv'))
    assert sorted(os.listdir(tmp_path)) == ['big.geojson']


def test_empty(tmp_path):
    path = str(tmp_path / 'e.geojson')
    assert write_geojson([], path, CLASSES, PALETTE) == 0
    assert _strict_json(open(path).read()) == {
        'type': 'FeatureCollection', 'features': []}
    assert write_csv([], str(tmp_path / 'e.csv')) == 0
    assert open(tmp_path / 'e.csv').read().strip() == ','.join(
        list(CSV_COLUMNS) + list(MEASUREMENT_KEYS))
