"""Tissue detection on thumbnails and user-given tissue masks."""
import cv2
import numpy as np
import pytest
from PIL import Image

from pns_mmdet.wsi.synthetic_slide import (_block_tissue,
                                           make_synthetic_slide,
                                           tissue_field)
from pns_mmdet.wsi.tissue import detect_tissue, load_tissue_mask

GLASS = (242, 241, 244)
PINK = (228, 160, 200)


def _canvas(h=120, w=160, colour=GLASS, seed=0):
    rng = np.random.default_rng(seed)
    img = np.asarray(colour, np.float32) + rng.normal(0, 2, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope='module')
def synthetic_thumb(tmp_path_factory):
    out = tmp_path_factory.mktemp('tissue') / 's.tif'
    info = make_synthetic_slide(str(out), size=1536, seed=2, tile=128,
                                return_image=True)
    thumb = cv2.resize(info['image'], (192, 192),
                       interpolation=cv2.INTER_AREA)
    truth = _block_tissue(tissue_field(2), 0, 0, 192, 192, (192, 192))
    return thumb, truth


@pytest.mark.parametrize('channel', ['saturation', 'od'])
def test_detects_synthetic_tissue(synthetic_thumb, channel):
    thumb, truth = synthetic_thumb
    mask = detect_tissue(thumb, channel=channel)
    assert mask.shape == truth.shape and mask.dtype == bool
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.9
    # Physical clean-up sizes: the thumbnail is at 8 x 0.25 µm/px.
    mask2 = detect_tissue(thumb, mpp=2.0, channel=channel,
                          min_area_um2=256.0, hole_area_um2=256.0,
                          closing_um=4.0)
    np.testing.assert_array_equal(mask2, mask)


def test_cleanup_removes_dust_fills_holes():
    img = _canvas()
    img[20:100, 20:100] = PINK
    img[50:55, 50:55] = GLASS  # a small lumen: filled
    img[10:13, 140:143] = PINK  # dust: dropped
    mask = detect_tissue(img)
    expected = np.zeros(img.shape[:2], bool)
    expected[20:100, 20:100] = True
    np.testing.assert_array_equal(mask, expected)
    # Without clean-up the lumen and the dust remain.
    raw = detect_tissue(img, closing_px=0, min_area_px=0, hole_area_px=0)
    assert not raw[50:55, 50:55].any() and raw[10:13, 140:143].all()


def test_no_glass_and_no_tissue():
    assert not detect_tissue(_canvas()).any()  # Otsu on glass noise
    tissue = _canvas(colour=PINK)
    tissue[::7, ::5] = (90, 40, 130)  # nuclei: Otsu alone splits these
    assert detect_tissue(tissue).mean() > 0.99
    with pytest.raises(ValueError, match='uint8 RGB'):
        detect_tissue(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match='channel'):
        detect_tissue(_canvas(), channel='hue')


def test_load_tissue_mask(tmp_path):
    m = np.zeros((50, 100), np.uint8)
    m[10:30, 20:60] = 255
    Image.fromarray(m).save(tmp_path / 'm.png')
    got = load_tissue_mask(str(tmp_path / 'm.png'),
                           slide_dimensions=(2000, 1000))
    np.testing.assert_array_equal(got, m > 0)
    up = load_tissue_mask(str(tmp_path / 'm.png'), size=(200, 100))
    np.testing.assert_array_equal(up, np.kron(m > 0, np.ones((2, 2), bool)))
    # RGB with colour in one channel, palette and 16-bit: any non-zero.
    rgb = np.zeros((50, 100, 3), np.uint8)
    rgb[10:30, 20:60, 1] = 1
    Image.fromarray(rgb).save(tmp_path / 'rgb.png')
    np.testing.assert_array_equal(
        load_tissue_mask(str(tmp_path / 'rgb.png')), m > 0)
    Image.fromarray(m).convert('P').save(tmp_path / 'p.png')
    np.testing.assert_array_equal(load_tissue_mask(str(tmp_path / 'p.png')),
                                  m > 0)
    Image.fromarray((m > 0).astype(np.uint16) * 3).save(tmp_path / 'w.png')
    np.testing.assert_array_equal(load_tissue_mask(str(tmp_path / 'w.png')),
                                  m > 0)
    with pytest.raises(ValueError, match=r'm.png.*aspect ratio'):
        load_tissue_mask(str(tmp_path / 'm.png'),
                         slide_dimensions=(1000, 1000))
    (tmp_path / 'bad.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'x' * 20)
    with pytest.raises(ValueError, match='bad.png'):
        load_tissue_mask(str(tmp_path / 'bad.png'))
    with pytest.raises(FileNotFoundError, match='none.png'):
        load_tissue_mask(str(tmp_path / 'none.png'))


def test_small_biopsy_fragment_is_kept():
    """A fragment of ~10,000 µm² (a 110 µm disc) at the runner's 8 µm/px
    is tissue, not dust: its nuclei must not be skipped."""
    yy, xx = np.mgrid[:48, :48]
    thumb = np.full((48, 48, 3), 242, np.uint8)
    disc = (xx - 15)**2 + (yy - 20)**2 <= 7**2
    thumb[disc] = (230, 150, 200)
    speck = (xx - 40)**2 + (yy - 40)**2 <= 1
    thumb[speck] = (230, 150, 200)
    mask = detect_tissue(thumb, mpp=8.0)
    assert mask[disc].all()
    assert not mask[speck].any()  # ~5 px = 320 µm²: dust
