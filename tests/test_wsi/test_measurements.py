"""nucleus_measurements: physical morphology and stain optical density."""
import numpy as np
import pytest
from skimage.color import rgb_from_hed

from pns_mmdet.visualization.polygons import mask_to_geometry
from pns_mmdet.wsi.measurements import MEASUREMENT_KEYS, nucleus_measurements


def _ellipse(a, b, pad=3):
    h, w = 2 * b + 2 * pad + 1, 2 * a + 2 * pad + 1
    yy, xx = np.mgrid[:h, :w]
    return ((xx - w // 2) / a)**2 + ((yy - h // 2) / b)**2 <= 1


def _stain(od_h=0.0, od_e=0.0):
    """uint8 RGB of a pixel with the given stain optical densities."""
    od = od_h * rgb_from_hed[0] + od_e * rgb_from_hed[1]
    return np.round(255 * 10.0**(-od)).astype(np.uint8)


def test_disk_morphology():
    mask = _ellipse(10, 10)
    rgb = np.full(mask.shape + (3, ), 200, np.uint8)
    m = nucleus_measurements(mask, rgb, mpp=0.5)
    assert tuple(m) == MEASUREMENT_KEYS
    # Area: pixel count x mpp^2, i.e. exactly the pixel-edge polygon's.
    assert m['area_um2'] == mask.sum() * 0.25
    assert m['area_um2'] == mask_to_geometry(mask).area * 0.25
    assert m['eccentricity'] < 0.1
    assert 0.9 < m['solidity'] <= 1.0
    assert m['major_axis_um'] == pytest.approx(10.0, rel=0.05)
    assert m['minor_axis_um'] == pytest.approx(10.0, rel=0.05)
    assert m['perimeter_um'] == pytest.approx(np.pi * 10.0, rel=0.1)


def test_ellipse_morphology():
    m = nucleus_measurements(_ellipse(20, 10),
                             np.zeros(_ellipse(20, 10).shape + (3, ),
                                      np.uint8), mpp=0.25)
    assert m['eccentricity'] == pytest.approx(np.sqrt(0.75), abs=0.02)
    assert m['major_axis_um'] == pytest.approx(10.0, rel=0.05)
    assert m['minor_axis_um'] == pytest.approx(5.0, rel=0.05)
    # A crescent (disk minus an offset disk) is far from convex.
    disk = _ellipse(10, 10)
    bite = np.roll(_ellipse(10, 10), 8, axis=1)
    crescent = disk & ~bite
    m = nucleus_measurements(crescent, np.zeros(disk.shape + (3, ),
                                                np.uint8), mpp=1.0)
    assert m['solidity'] < 0.7


def test_stain_optical_density():
    mask = np.zeros((6, 6), bool)
    mask[1:5, 1:5] = True
    rgb = np.full((6, 6, 3), 255, np.uint8)  # only the mask is stained
    rgb[mask] = _stain(od_h=0.5)
    m = nucleus_measurements(mask, rgb, mpp=1.0)
    assert m['hematoxylin_od'] == pytest.approx(0.5, abs=0.03)
    assert m['eosin_od'] == pytest.approx(0.0, abs=0.03)
    rgb[mask] = _stain(od_e=0.3)
    m = nucleus_measurements(mask, rgb, mpp=1.0)
    assert m['eosin_od'] == pytest.approx(0.3, abs=0.03)
    assert m['hematoxylin_od'] == pytest.approx(0.0, abs=0.03)
    rgb[mask] = 255
    m = nucleus_measurements(mask, rgb, mpp=1.0)
    assert m['hematoxylin_od'] == 0.0 and m['eosin_od'] == 0.0


def test_bad_input():
    mask = np.ones((3, 3), bool)
    rgb = np.zeros((3, 3, 3), np.uint8)
    with pytest.raises(ValueError, match='empty'):
        nucleus_measurements(np.zeros((3, 3), bool), rgb, 1.0)
    with pytest.raises(ValueError, match='uint8'):
        nucleus_measurements(mask, rgb[:2], 1.0)
    with pytest.raises(ValueError, match='mpp'):
        nucleus_measurements(mask, rgb, 0.0)
