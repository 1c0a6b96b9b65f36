"""SlideRunner: tile grid, ownership across seams, frames, tissue, ROI,
finished-slide skipping and the journal's settings check.

The model is the tool tests' tiny PromptNucSeg with deterministic stub
parts that segment dark discs exactly (stub_inferencer.py), so a tiled
slide run and a whole-image NucleusInferencer run on the same pixels can be
compared nucleus by nucleus.
"""
import json
import math
import os.path as osp

import numpy as np
import pytest
from skimage.draw import polygon2mask

from pns_mmdet.wsi.nucleus_records import one_region
from pns_mmdet.wsi.runner import SlideRunner, processing_tiles

from stub_inferencer import disc_slide, stub_inferencer, write_tiny_config


@pytest.fixture(scope='module')
def inferencer(tmp_path_factory):
    folder = tmp_path_factory.mktemp('cfg')
    return stub_inferencer(write_tiny_config(folder))


def records_of(db):
    from pns_mmdet.wsi.store import NucleusStore
    store = NucleusStore(db, mode='r')
    try:
        return list(store.iter_records())
    finally:
        store.close()


def record_mask(rec, box):
    """Pixels of a record's polygon (level-0 pixel-square frame) in the
    window ``box`` (x0, y0, x1, y1); vertices lie on pixel edges, so pixel
    centres are never on the outline."""
    x0, y0, x1, y1 = box
    ring = np.asarray(rec.polygon, dtype=np.float64) - (x0 + 0.5, y0 + 0.5)
    return polygon2mask((y1 - y0, x1 - x0), ring[:, ::-1])


# ------------------------------------------------------------------ grid
def test_processing_tiles_grid_and_cores():
    tiles = processing_tiles((0, 0, 1000, 600), 512, 64)
    # x: starts 0, 448, 488 (last flush); y: 0, 88.
    assert [(t.x, t.y, t.w, t.h) for t in tiles] == [
        (0, 0, 512, 512), (448, 0, 512, 512), (488, 0, 512, 512),
        (0, 88, 512, 512), (448, 88, 512, 512), (488, 88, 512, 512)]
    assert [t.index for t in tiles] == list(range(6))
    # Ownership borders in the middle of each overlap.
    assert tiles[0].core == (-math.inf, -math.inf, 480.0, 300.0)
    assert tiles[1].core == (480.0, -math.inf, 724.0, 300.0)
    assert tiles[5].core == (724.0, 300.0, math.inf, math.inf)
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(0, 1000, (500, 2)) * (1, 0.6):
        owners = [t.index for t in tiles if t.owns(x, y)]
        assert len(owners) == 1
        t = tiles[owners[0]]
        assert t.x <= x < t.x + t.w and t.y <= y < t.y + t.h
    # A region smaller than a tile is one tile of its own size.
    (one, ) = processing_tiles((10, 20, 110, 70), 512, 64)
    assert (one.x, one.y, one.w, one.h) == (10, 20, 100, 50)
    with pytest.raises(ValueError, match='overlap'):
        processing_tiles((0, 0, 100, 100), 64, 64)


def test_one_simple_polygon_per_nucleus():
    """Masks whose pixel outline is not one simple ring (parts, holes,
    corner contacts) become one polygon covering exactly the returned
    mask."""
    import shapely
    parts = np.zeros((6, 6), bool)
    parts[0:2, 0:2] = True  # 4 px, touches the next part at a corner
    parts[2:5, 2:5] = True  # 9 px
    pinch = np.array([[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 1],
                      [0, 0, 1, 1]], bool)
    holed = np.ones((5, 5), bool)
    holed[2, 2] = False
    for mask, area in ((parts, 9), (pinch, 8), (holed, 25)):
        out, ring = one_region(mask)
        poly = shapely.Polygon(ring)
        assert poly.is_valid and poly.area == out.sum() == area
        assert not (out & ~ndimage_fill(mask)).any()
    assert one_region(np.zeros((3, 3), bool))[1] is None


def ndimage_fill(mask):
    from scipy import ndimage
    return ndimage.binary_fill_holes(mask)


def test_runner_rejects_bad_settings(inferencer):
    with pytest.raises(ValueError, match='model_mpp'):
        SlideRunner(inferencer, model_mpp=0)
    with pytest.raises(ValueError, match='overlap'):
        SlideRunner(inferencer, model_mpp=0.5, tile_size=256, overlap=300)


# ----------------------------------------------------------- equivalence
def test_slide_equals_whole_image_across_seams(tmp_path, inferencer):
    """Issue acceptance: tiled slide run == NucleusInferencer on the same
    pixels (count, IoU > 0.95 per nucleus), with many nuclei cut by the
    processing-tile seams."""
    size = 3000
    rgb, n_discs = disc_slide(str(tmp_path / 's.tif'), (size, size), 0.5,
                              seed=1, spacing=60)
    whole = inferencer(rgb)
    assert whole.num_nuclei == n_discs  # the stub model is exact
    runner = SlideRunner(inferencer, model_mpp=0.5, tile_size=512,
                         overlap=64)
    summary = runner.run(str(tmp_path / 's.tif'), str(tmp_path / 'out'))
    assert summary.status == 'finished' and summary.nuclei == n_discs
    recs = records_of(summary.outputs['db'])
    assert len(recs) == n_discs
    # Seams: the tile edges inside the slide (tiles start every 448 px).
    tiles = processing_tiles((0, 0, size, size), 512, 64)
    edges = sorted({t.x for t in tiles[1:]} | {t.x + t.w for t in tiles}
                   - {0, size})
    crossing = sum(
        any(r.box[0] < e < r.box[2] or r.box[1] < e < r.box[3]
            for e in edges) for r in recs)
    assert crossing > 100
    matched = set()
    for rec in recs:
        x0, y0, x1, y1 = (int(round(v)) for v in rec.box)
        px, py = int(rec.point[0]), int(rec.point[1])
        inst_id = int(whole.inst_map[py, px])
        assert inst_id > 0 and inst_id not in matched
        matched.add(inst_id)
        # IoU on the union of both boxes.
        wb = whole.boxes[inst_id - 1]
        bx0, by0 = int(min(x0, wb[0])), int(min(y0, wb[1]))
        bx1, by1 = int(max(x1, wb[2])), int(max(y1, wb[3]))
        ours = record_mask(rec, (bx0, by0, bx1, by1))
        ref = whole.inst_map[by0:by1, bx0:bx1] == inst_id
        iou = (ours & ref).sum() / (ours | ref).sum()
        assert iou > 0.95
        assert rec.label == int(whole.labels[inst_id - 1])
    assert len(matched) == whole.num_nuclei


# ---------------------------------------------------------------- frames
def test_model_frame_maps_back_to_level0(tmp_path, inferencer):
    """Slide at 0.25 µm/px, model at 0.5: tiles are read at half size and
    every output is in level-0 pixels and µm."""
    rgb, n = disc_slide(str(tmp_path / 's.tif'), (800, 640), 0.25, seed=2,
                        spacing=60, radius=(12, 16))
    runner = SlideRunner(inferencer, model_mpp=0.5, tile_size=200,
                         overlap=64)
    summary = runner.run(str(tmp_path / 's.tif'), str(tmp_path / 'out'))
    recs = records_of(summary.outputs['db'])
    assert len(recs) == n
    from scipy import ndimage
    truth, _ = ndimage.label(rgb.mean(-1) < 128)
    for rec in recs:
        i = truth[int(rec.y), int(rec.x)]
        assert i > 0
        ys, xs = np.nonzero(truth == i)
        # Centroid within one model pixel (2 level-0 px) of the truth.
        assert abs(rec.x - (xs.mean() + 0.5)) < 2
        assert abs(rec.y - (ys.mean() + 0.5)) < 2
        area0 = len(xs)  # level-0 px
        assert abs(rec.measurements['area_um2'] - area0 * 0.25**2) < \
            0.15 * area0 * 0.25**2
    run = json.loads(open(summary.outputs['db'].replace(
        'nuclei.db', 'run.json')).read())
    assert run['scale'] == 2.0 and run['slide_mpp'] == 0.25
    assert run['model_mpp'] == 0.5 and run['dimensions'] == [800, 640]
    # 400 x 320 model px: x starts 0, 136, 200; y 0, 120.
    assert run['tiles_total'] == 6 and run['nuclei'] == n


# ------------------------------------------------- tissue, ROI, skipping
def test_tiles_without_tissue_skipped(tmp_path, inferencer):
    # Tissue only in the left third: the tiles of the white part are not
    # read or run.
    rgb, n = disc_slide(str(tmp_path / 's.tif'), (1200, 400), 0.5,
                        seed=3, spacing=50, tissue=(0, 0, 380, 400))
    runner = SlideRunner(inferencer, model_mpp=0.5, tile_size=256,
                         overlap=64)
    summary = runner.run(str(tmp_path / 's.tif'), str(tmp_path / 'out'))
    # x starts 0, 192, 384, 576, 768, 944; y 0, 144.
    assert summary.tiles_total == 12
    # Cores of columns 0 and 1 reach x = 416 > 380; column 2 starts there.
    assert summary.tiles_tissue == 4 and summary.tiles_run == 4
    assert summary.nuclei == n
    import cv2
    # The mask at 8 µm/px (600 x 200 µm), the overlay at the slide's size
    # (never upsampled).
    mask = cv2.imread(summary.outputs['tissue_mask'], cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (25, 75)
    assert mask[:, :22].min() == 255 and mask[:, 26:].max() == 0
    overlay = cv2.imread(summary.outputs['overlay'])
    assert overlay.shape[:2] == (400, 1200)
    assert (overlay != cv2.imread(str(tmp_path / 's.tif'))).any(-1).sum() > \
        n * 10  # outlines drawn


def test_user_tissue_mask(tmp_path, inferencer):
    import cv2
    disc_slide(str(tmp_path / 's.tif'), (800, 400), 0.5, seed=3,
               spacing=50)
    mask = np.zeros((40, 80), np.uint8)
    mask[:, 64:] = 255  # tissue in the right fifth only (x >= 640)
    cv2.imwrite(str(tmp_path / 'mask.png'), mask)
    runner = SlideRunner(inferencer, model_mpp=0.5, tile_size=256,
                         overlap=64)
    summary = runner.run(str(tmp_path / 's.tif'), str(tmp_path / 'out'),
                         tissue_mask=str(tmp_path / 'mask.png'))
    # x starts 0, 192, 384, 544 (cores from 224, 416, 592); y 0, 144.
    assert summary.tiles_total == 8 and summary.tiles_tissue == 2
    recs = records_of(summary.outputs['db'])
    assert recs and min(r.point[0] for r in recs) >= 592
    cv2.imwrite(str(tmp_path / 'square.png'), np.ones((50, 50), np.uint8))
    with pytest.raises(ValueError, match='aspect ratio'):
        runner.run(str(tmp_path / 's.tif'), str(tmp_path / 'out2'),
                   tissue_mask=str(tmp_path / 'square.png'))


def test_roi_limits_the_region(tmp_path, inferencer):
    rgb, n = disc_slide(str(tmp_path / 's.tif'), (900, 700), 0.5, seed=4,
                        spacing=50)
    runner = SlideRunner(inferencer, model_mpp=0.5, tile_size=256,
                         overlap=64)
    summary = runner.run(str(tmp_path / 's.tif'), str(tmp_path / 'out'),
                         roi=(300, 200, 400, 300))
    recs = records_of(summary.outputs['db'])
    assert recs and summary.nuclei == len(recs)
    for r in recs:
        assert 300 <= r.point[0] < 700 and 200 <= r.point[1] < 500
    with pytest.raises(ValueError, match='outside the slide'):
        runner.run(str(tmp_path / 's.tif'), str(tmp_path / 'out2'),
                   roi=(5000, 0, 10, 10))


def test_finished_slide_skipped_unless_overwrite(tmp_path, inferencer):
    disc_slide(str(tmp_path / 's.tif'), (400, 400), 0.5, seed=5)
    runner = SlideRunner(inferencer, model_mpp=0.5, tile_size=256,
                         overlap=64)
    out = str(tmp_path / 'out')
    first = runner.run(str(tmp_path / 's.tif'), out)
    stamp = osp.getmtime(first.outputs['csv'])
    again = runner.run(str(tmp_path / 's.tif'), out)
    assert again.status == 'skipped' and again.nuclei == first.nuclei
    assert osp.getmtime(first.outputs['csv']) == stamp
    redo = runner.run(str(tmp_path / 's.tif'), out, overwrite=True)
    assert redo.status == 'finished' and redo.nuclei == first.nuclei
    assert redo.tiles_run == first.tiles_run


def test_killed_while_finishing_redoes_only_the_outputs(tmp_path,
                                                       inferencer):
    """A run killed after the store was renamed but before run.json (the
    finished mark) rewrites the outputs from the complete journal."""
    import os
    disc_slide(str(tmp_path / 's.tif'), (400, 400), 0.5, seed=8)
    runner = SlideRunner(inferencer, model_mpp=0.5, tile_size=256,
                         overlap=64)
    out = str(tmp_path / 'out')
    first = runner.run(str(tmp_path / 's.tif'), out)
    with open(first.outputs['csv']) as f:
        csv_text = f.read()
    os.remove(osp.join(out, 'run.json'))
    os.remove(first.outputs['csv'])
    again = runner.run(str(tmp_path / 's.tif'), out)
    assert again.status == 'finished' and again.tiles_run == 0
    assert again.tiles_resumed == first.tiles_run
    with open(again.outputs['csv']) as f:
        assert f.read() == csv_text


def test_journal_with_other_settings_refused(tmp_path, inferencer):
    from pns_mmdet.wsi.runner import PARTIAL_DB
    from pns_mmdet.wsi.store import NucleusStore
    disc_slide(str(tmp_path / 's.tif'), (400, 400), 0.5, seed=6)
    out = tmp_path / 'out'
    out.mkdir()
    store = NucleusStore(str(out / PARTIAL_DB), mode='a')
    store.set_meta('params', dict(tile_size=999))
    store.close()
    runner = SlideRunner(inferencer, model_mpp=0.5, tile_size=256,
                         overlap=64)
    with pytest.raises(ValueError, match='--overwrite'):
        runner.run(str(tmp_path / 's.tif'), str(out))
    assert runner.run(str(tmp_path / 's.tif'), str(out),
                      overwrite=True).status == 'finished'
