"""SlideReader / open_slide: exact reads, physical resolution, errors."""
import glob
import os.path as osp
import pickle

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from pns_mmdet.wsi import (SlideMetadataError, SlideReadError, SlideReader,
                           open_slide)

W, H = 640, 480  # multiples of 5 and 4: exact 2x / 2.5x / 4x geometry


def _image(seed=0):
    """Smooth RGB with detail at every scale (uint8)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (H // 8, W // 8, 3)).astype(np.float32)
    img = cv2.resize(small, (W, H), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 20, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_tiff(path, levels, mpp=0.5, unit='CENTIMETER', tile=(128, 128)):
    """Pyramid in consecutive IFDs, deflate tiles, resolution tags."""
    with tifffile.TiffWriter(path) as tw:
        for i, lv in enumerate(levels):
            d = W / lv.shape[1]
            kw = {}
            if mpp is not None:
                per_unit = 1e4 / (mpp * d) if unit == 'CENTIMETER' else \
                    25400 / (mpp * d)
                kw = dict(resolution=(per_unit, per_unit),
                          resolutionunit=unit)
            tw.write(lv, tile=tile, compression='zlib', photometric='rgb',
                     subfiletype=1 if i else 0, **kw)
    return str(path)


@pytest.fixture(scope='module')
def img():
    return _image()


@pytest.fixture(scope='module')
def pyramid(tmp_path_factory, img):
    levels = [img] + [
        cv2.resize(img, (W // d, H // d), interpolation=cv2.INTER_AREA)
        for d in (2, 4)
    ]
    path = tmp_path_factory.mktemp('slides') / 'pyramid.tif'
    return _write_tiff(path, levels), levels


@pytest.fixture(scope='module')
def flat(tmp_path_factory, img):
    """Single-level tiled TIFF: every other resolution is resampled."""
    path = tmp_path_factory.mktemp('slides') / 'flat.tif'
    return _write_tiff(path, [img])


@pytest.mark.parametrize('backend', [None, 'tiffslide', 'image'])
def test_pyramid_reads_equal_array(pyramid, backend):
    path, levels = pyramid
    with open_slide(path, backend=backend) as r:
        assert r.backend == (backend or 'openslide')
        assert r.dimensions == (W, H)
        assert r.level_count == 3
        assert r.level_dimensions == ((W, H), (W // 2, H // 2),
                                      (W // 4, H // 4))
        assert r.level_downsamples == pytest.approx((1.0, 2.0, 4.0))
        assert r.mpp == pytest.approx(0.5)
        np.testing.assert_array_equal(r.read_region(0, 0, W, H), levels[0])
        np.testing.assert_array_equal(
            r.read_region(33, 17, 100, 90, mpp=0.5), levels[0][17:107,
                                                                33:133])
        # Level 1 is picked for mpp 1.0 and level 2 for mpp 2.0 (and for
        # 2.6, then area-resampled from level 2, never from level 0).
        np.testing.assert_array_equal(r.read_region(0, 0, W // 2, H // 2,
                                                    mpp=1.0), levels[1])
        np.testing.assert_array_equal(
            r.read_region(5, 6, 50, 40, mpp=2.0), levels[2][6:46, 5:55])
        assert r.best_level(1.9) == 0 and r.best_level(1.999) == 1
        assert r.best_level(2.6) == 1
        assert r.best_level(4.0) == 2 and r.best_level(0.5) == 0


def test_region_outside_is_white(pyramid):
    path, levels = pyramid
    with open_slide(path) as r:
        out = r.read_region(-10, H - 20, 50, 40)
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:20, 10:], levels[0][H - 20:, :40])
    assert (out[20:] == 255).all() and (out[:, :10] == 255).all()


def test_half_resolution_matches_direct_resize(flat, img):
    ref = cv2.resize(img, (W // 2, H // 2), interpolation=cv2.INTER_AREA)
    with open_slide(flat) as r:
        assert r.level_count == 1
        half = r.read_region(0, 0, W // 2, H // 2, mpp=1.0)
        np.testing.assert_array_equal(half, ref)
        # A 2.5x read at odd x starts at a fractional level-0 pixel
        # (the exact-geometry path); it must agree with a whole-image
        # area resize up to rounding.
        ref25 = cv2.resize(img, (W * 2 // 5, H * 2 // 5),
                           interpolation=cv2.INTER_AREA).astype(int)
        odd = r.read_region(31, 21, 120, 90, mpp=1.25).astype(int)
        assert np.abs(odd - ref25[21:111, 31:151]).max() <= 1
        even = r.read_region(30, 20, 120, 90, mpp=1.25).astype(int)
        assert np.abs(even - ref25[20:110, 30:150]).max() <= 1
        # Upsampling (model finer than the slide): linear interpolation.
        ref2 = cv2.resize(img, (W * 2, H * 2),
                          interpolation=cv2.INTER_LINEAR).astype(int)
        up = r.read_region(101, 81, 200, 150, mpp=0.25).astype(int)
        assert np.abs(up - ref2[81:231, 101:301]).max() <= 1


def test_neighbouring_regions_agree(flat):
    """Two overlapping reads give the same pixels where they overlap."""
    with open_slide(flat) as r:
        a = r.read_region(40, 30, 100, 80, mpp=0.5 * 1.37)
        b = r.read_region(90, 60, 100, 80, mpp=0.5 * 1.37)
    np.testing.assert_array_equal(a[30:, 50:], b[:50, :50])


def test_non_integer_downsample_keeps_geometry(tmp_path):
    """openslide resamples levels whose downsample is not an integer
    (odd level-0 sizes); the reader undoes the sub-pixel shift."""
    rng = np.random.default_rng(2)
    h, w = 479, 639  # level 1 is 320 x 240: downsample 1.9964
    small = rng.integers(0, 256, (31, 41, 3)).astype(np.float32)
    img = np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC),
                  0, 255).astype(np.uint8)
    lv1 = cv2.resize(np.pad(img, ((0, 1), (0, 1), (0, 0)), mode='edge'),
                     (320, 240), interpolation=cv2.INTER_AREA)
    path = str(tmp_path / 'odd.tif')
    with tifffile.TiffWriter(path) as tw:
        for i, lv in enumerate((img, lv1)):
            tw.write(lv, tile=(128, 128), compression='zlib',
                     photometric='rgb', resolution=(2e4 / 2**i, ) * 2,
                     resolutionunit='CENTIMETER', subfiletype=i)
    with open_slide(path) as r:
        d = r.level_downsamples[1]
        assert r.backend == 'openslide' and 1.99 < d < 2.0
        for x in (51, 100, 203):  # sub-pixel shifts 0.09, 0.18, -0.13
            got = r.read_region(x, 10, 100, 80, mpp=0.5 * d).astype(int)
            err = np.abs(got - lv1[10:90, x:x + 100])
            assert err.mean() < 0.5 and err.max() <= 5


def test_thumbnail(pyramid):
    path, levels = pyramid
    with open_slide(path) as r:
        thumb = r.thumbnail(160)
    np.testing.assert_array_equal(thumb, levels[2])


def test_pickle_reopens(pyramid):
    path, levels = pyramid
    with open_slide(path, slide_mpp=0.4) as r:
        copy = pickle.loads(pickle.dumps(r))
    assert isinstance(copy, SlideReader)
    assert copy.mpp == 0.4 and copy.backend == 'openslide'
    np.testing.assert_array_equal(copy.read_region(3, 4, 20, 10),
                                  levels[0][4:14, 3:23])
    copy.close()
    with pytest.raises(SlideReadError, match='closed'):
        copy.read_region(0, 0, 1, 1)


def test_missing_mpp_is_an_error(tmp_path, img):
    path = _write_tiff(tmp_path / 'nompp.tif', [img], mpp=None)
    with pytest.raises(SlideMetadataError, match='--slide-mpp') as err:
        open_slide(path)
    assert 'nompp.tif' in str(err.value)
    # 72 dpi from a generic writer is not a microscope resolution.
    dpi = _write_tiff(tmp_path / 'dpi72.tif', [img], mpp=25400 / 72,
                      unit='INCH')
    with pytest.raises(SlideMetadataError, match='not a microscope'):
        open_slide(dpi)
    with open_slide(path, slide_mpp=0.3) as r:
        assert r.mpp == 0.3 and r.mpp_source == 'slide_mpp argument'
        np.testing.assert_array_equal(r.read_region(0, 0, W, H), img)
    with pytest.raises(ValueError, match='slide_mpp'):
        open_slide(path, slide_mpp=-1)


def test_plain_png(tmp_path, img):
    path = str(tmp_path / 'tile.png')
    Image.fromarray(img).save(path)
    with pytest.raises(SlideMetadataError, match='tile.png.*--slide-mpp'):
        open_slide(path)
    with open_slide(path, slide_mpp=0.25) as r:
        assert r.backend == 'image' and r.level_count == 1
        np.testing.assert_array_equal(r.read_region(7, 9, 30, 20),
                                      img[9:29, 7:37])
    Image.fromarray(img).save(path, dpi=(25400 / 0.5, 25400 / 0.5))
    with open_slide(path) as r:
        assert r.mpp == pytest.approx(0.5, rel=1e-3)


def test_truncated_and_corrupt_files(tmp_path, pyramid):
    data = open(pyramid[0], 'rb').read()
    cut = tmp_path / 'cut.tif'
    cut.write_bytes(data[:len(data) * 3 // 5])
    with pytest.raises(SlideReadError, match='cut.tif.*truncated'):
        open_slide(str(cut))
    # Intact structure, garbage in one tile: the read names the file and
    # the region.
    with tifffile.TiffFile(pyramid[0]) as tf:
        off = tf.pages[0].dataoffsets[5]
    bad = bytearray(data)
    bad[off:off + 64] = b'\xff' * 64
    (tmp_path / 'bad.tif').write_bytes(bytes(bad))
    for backend in (None, 'tiffslide'):
        with pytest.raises(SlideReadError, match='bad.tif.*cannot read'):
            with open_slide(str(tmp_path / 'bad.tif'),
                            backend=backend) as r:
                r.read_region(0, 0, W, H)
    junk = tmp_path / 'junk.svs'
    junk.write_bytes(b'not a slide' * 50)
    with pytest.raises(SlideReadError, match='junk.svs'):
        open_slide(str(junk))
    with pytest.raises(SlideReadError, match='no such file'):
        open_slide(str(tmp_path / 'absent.svs'))


def _monusac(shared_data):
    root = osp.join(shared_data, 'monusac_sample')
    svs = sorted(glob.glob(osp.join(root, 'original', '*.svs')))
    if not svs:
        pytest.skip(f'MoNuSAC sample slides not found under {root}')
    return root, svs


@pytest.mark.parametrize('backend', [None, 'tiffslide', 'image'])
def test_monusac_svs_equal_decoded_png(shared_data, backend):
    root, svs = _monusac(shared_data)
    for path in svs:
        # SOURCE.md: images/*.png are the first .svs page decoded to RGB.
        png = np.asarray(Image.open(osp.join(
            root, 'images', osp.basename(path)[:-4] + '.png')).convert('RGB'))
        with open_slide(path, backend=backend) as r:
            assert r.backend == (backend or 'openslide')
            assert r.dimensions == (png.shape[1], png.shape[0])
            assert r.mpp == pytest.approx(0.19448, abs=1e-5)
            w, h = r.dimensions
            np.testing.assert_array_equal(r.read_region(0, 0, w, h), png)


def test_monusac_truncated_svs(shared_data, tmp_path):
    _, svs = _monusac(shared_data)
    data = open(svs[0], 'rb').read()
    for frac in (2, 5):
        cut = tmp_path / f'cut{frac}.svs'
        cut.write_bytes(data[:len(data) // frac])
        with pytest.raises(SlideReadError, match=f'cut{frac}.svs'):
            with open_slide(str(cut)) as r:
                r.read_region(0, 0, *r.dimensions)
