"""Tests for pns_mmdet.datasets.io (image and instance-map readers)."""
import os.path as osp

import cv2
import numpy as np
import pytest
import scipy.io
from PIL import Image

from pns_mmdet.datasets import load_image, load_instance_map


@pytest.fixture
def inst() -> np.ndarray:
    m = np.zeros((5, 7), np.int64)
    m[1:3, 1:3] = 1
    m[3, 4:7] = 300  # > 255: needs 16 bits
    return m


def test_instance_map_formats_roundtrip(tmp_path, inst):
    png = str(tmp_path / 'm.png')
    Image.fromarray(inst.astype(np.uint16)).save(png)
    tif = str(tmp_path / 'm.tif')
    cv2.imwrite(tif, inst.astype(np.uint16))
    npy = str(tmp_path / 'm.npy')
    np.save(npy, inst.astype(np.float32))  # integral floats are accepted
    mat = str(tmp_path / 'm.mat')
    scipy.io.savemat(mat, {'inst_map': inst.astype(np.int32), 'x': 1})
    mat2 = str(tmp_path / 'm2.mat')
    scipy.io.savemat(mat2, {'instance_map': inst.astype(np.uint16)})
    dct = str(tmp_path / 'd.npy')  # upstream PromptNucSeg pickled dict
    np.save(dct, {'inst_map': inst, 'type_map': inst > 0})
    for p in (png, tif, npy, mat, mat2, dct):
        out = load_instance_map(p)
        assert out.dtype == np.int32, p
        np.testing.assert_array_equal(out, inst, err_msg=p)


def test_instance_map_errors(tmp_path, inst):
    with pytest.raises(FileNotFoundError, match='nope.png'):
        load_instance_map(str(tmp_path / 'nope.png'))
    p = str(tmp_path / 'neg.npy')
    np.save(p, inst - 1)
    with pytest.raises(ValueError, match='neg.npy.*negative'):
        load_instance_map(p)
    p = str(tmp_path / 'frac.npy')
    np.save(p, inst + 0.5)
    with pytest.raises(ValueError, match='frac.npy.*non-integer'):
        load_instance_map(p)
    p = str(tmp_path / 'rgb.png')
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(p)
    with pytest.raises(ValueError, match='rgb.png.*2-D'):
        load_instance_map(p)
    p = str(tmp_path / 'k.mat')
    scipy.io.savemat(p, {'foo': inst, 'bar': inst})
    with pytest.raises(KeyError, match=r"k.mat.*\['bar', 'foo'\]"):
        load_instance_map(p)
    np.testing.assert_array_equal(load_instance_map(p, key='bar'), inst)
    p = str(tmp_path / 'bad.mat')
    with open(p, 'wb') as f:
        f.write(b'not a mat file at all')
    with pytest.raises(ValueError, match='bad.mat'):
        load_instance_map(p)
    p = str(tmp_path / 'm.txt')
    with open(p, 'w') as f:
        f.write('1')
    with pytest.raises(ValueError, match='unsupported'):
        load_instance_map(p)


def test_load_image_conversions(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), np.uint8)
    p = str(tmp_path / 'rgb.png')
    Image.fromarray(rgb).save(p)
    np.testing.assert_array_equal(load_image(p), rgb)
    # RGBA: alpha dropped, colours untouched (no compositing).
    rgba = np.concatenate([rgb, np.full((6, 8, 1), 7, np.uint8)], -1)
    p = str(tmp_path / 'rgba.png')
    Image.fromarray(rgba).save(p)
    np.testing.assert_array_equal(load_image(p), rgb)
    # Grayscale -> replicated.
    p = str(tmp_path / 'g.png')
    Image.fromarray(rgb[..., 0]).save(p)
    out = load_image(p)
    assert out.shape == (6, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], rgb[..., 0])
    # 16-bit grayscale with max 1000 -> rescaled by max: 1000 -> 255.
    g16 = np.array([[0, 500], [1000, 250]], np.uint16)
    p = str(tmp_path / 'g16.png')
    Image.fromarray(g16).save(p)
    np.testing.assert_array_equal(
        load_image(p)[..., 1], np.array([[0, 128], [255, 64]], np.uint8))
    # 16-bit colour (48-bit PNG) read at full depth, BGR->RGB handled.
    c16 = np.zeros((2, 2, 3), np.uint16)
    c16[0, 0] = (60000, 0, 0)  # red in RGB order
    c16[1, 1] = (0, 0, 30000)
    p = str(tmp_path / 'c16.png')
    cv2.imwrite(p, c16[..., ::-1])
    out = load_image(p)
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[1, 1], [0, 0, 128])
    p = str(tmp_path / 'c16.tif')
    cv2.imwrite(p, c16[..., ::-1])
    np.testing.assert_array_equal(load_image(p)[0, 0], [255, 0, 0])
    # 16-bit holding 8-bit data stays unscaled.
    p = str(tmp_path / 'small16.png')
    Image.fromarray(np.array([[0, 200]], np.uint16)).save(p)
    np.testing.assert_array_equal(load_image(p)[0, :, 0], [0, 200])


def test_load_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.png'):
        load_image(str(tmp_path / 'missing.png'))
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    p = str(tmp_path / 'full.png')
    Image.fromarray(rgb).save(p)
    with open(p, 'rb') as f:
        data = f.read()
    t = str(tmp_path / 'trunc.png')
    with open(t, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(ValueError, match='trunc.png'):
        load_image(t)
    g = str(tmp_path / 'garbage.png')
    with open(g, 'wb') as f:
        f.write(b'hello')
    with pytest.raises(ValueError, match='garbage.png'):
        load_image(g)


def test_real_dsb_tiff(shared_data):
    m = load_instance_map(
        osp.join(shared_data, 'dsb2018_stardist_tiny', 'mask2d.tif'))
    assert m.shape == (512, 512)
    assert len(np.unique(m)) - 1 == 125 and m.max() == 183
    img = load_image(
        osp.join(shared_data, 'dsb2018_stardist_tiny', 'img2d.tif'))
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
