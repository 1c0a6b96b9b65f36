"""make_synthetic_slide: a pyramidal TIFF openslide reads with its MPP."""
import importlib.util
import os
import os.path as osp

import numpy as np
import openslide
import pytest

from pns_mmdet.wsi import open_slide
from pns_mmdet.wsi.synthetic_slide import (_block_tissue, make_synthetic_slide,
                                           tissue_field)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture(scope='module')
def slide(tmp_path_factory):
    out = tmp_path_factory.mktemp('syn') / 'slide.tif'
    return make_synthetic_slide(str(out), size=(1100, 700), mpp=0.25,
                                seed=3, tile=128, compression='deflate',
                                return_image=True)


def test_openslide_reads_generic_tiff_with_mpp(slide):
    path = slide['path']
    assert openslide.OpenSlide.detect_format(path) == 'generic-tiff'
    with open_slide(path) as r:
        assert r.backend == 'openslide'
        assert r.mpp == pytest.approx(0.25)
        assert r.properties['openslide.mpp-x'] == '0.25'
        assert r.dimensions == (1100, 700)
        assert r.level_dimensions == ((1100, 700), (550, 350), (275, 175),
                                      (138, 88))
        assert [tuple(d) for d in slide['level_dimensions']
                ] == list(r.level_dimensions)
        img = slide['image']
        np.testing.assert_array_equal(r.read_region(0, 0, 1100, 700), img)
        # Level 1 is the 2x area downsample of level 0.
        lv1 = r.read_region(0, 0, 550, 350, mpp=0.5).astype(int)
        ref = img.reshape(350, 2, 550, 2, 3).mean((1, 3))
        assert np.abs(lv1 - ref).max() <= 1
    assert sorted(os.listdir(osp.dirname(path))) == ['slide.tif']


def test_content_tissue_and_nuclei(slide):
    img = slide['image'].astype(int)
    # Glass is light grey, tissue pink, nuclei dark purple.
    glass = (img.min(axis=2) > 230)
    dark = img.sum(axis=2) < 400
    assert 0.3 < glass.mean() < 0.95
    assert dark.any()
    assert not (dark & glass).any()
    assert slide['num_nuclei'] > 20
    assert 0.05 < slide['tissue_fraction'] < 0.7
    # The layout lives in slide-relative coordinates: the tissue fraction
    # is the same at 4x the pixels.
    field = tissue_field(3)
    small = _block_tissue(field, 0, 0, 1100, 700, (1100, 700)).mean()
    big = _block_tissue(field, 0, 0, 4400, 2800, (4400, 2800)).mean()
    assert big == pytest.approx(small, abs=0.003)
    assert big == pytest.approx(slide['tissue_fraction'], abs=0.01)
    assert not np.array_equal(field, tissue_field(4))


def test_seeded_and_jpeg(tmp_path, slide):
    a = make_synthetic_slide(str(tmp_path / 'a.tif'), size=(1100, 700),
                             seed=3, tile=128, return_image=True)
    np.testing.assert_array_equal(a['image'], slide['image'])
    assert a['num_nuclei'] == slide['num_nuclei']
    with open_slide(a['path']) as r:  # JPEG tiles: lossy, close
        err = np.abs(r.read_region(0, 0, 1100, 700).astype(int) -
                     a['image'])
    assert err.mean() < 3
    b = make_synthetic_slide(str(tmp_path / 'b.tif'), size=(300, 200),
                             seed=4, tile=128, return_image=True)
    assert b['image'].shape == (200, 300, 3)
    with pytest.raises(ValueError, match='tile'):
        make_synthetic_slide(str(tmp_path / 'c.tif'), size=64, tile=100)
    with pytest.raises(ValueError, match='compression'):
        make_synthetic_slide(str(tmp_path / 'c.tif'), size=64,
                             compression='lzw')
    assert not osp.exists(tmp_path / 'c.tif')


def _load_cli():
    path = osp.join(REPO, 'tools', 'dataset_converters',
                    'make_synthetic_slide.py')
    spec = importlib.util.spec_from_file_location('pns_make_slide', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli(tmp_path, capsys):
    cli = _load_cli()
    out = str(tmp_path / 'cli.tiff')
    assert cli.main([out, '--size', '400', '300', '--mpp', '0.5',
                     '--tile', '128']) == 0
    assert 'cli.tiff: 400x300 px at 0.5' in capsys.readouterr().out
    with open_slide(out) as r:
        assert r.dimensions == (400, 300) and r.mpp == pytest.approx(0.5)
    assert cli.main([out, '--size', '64', '--mpp', '-1']) == 2
    assert 'mpp must be > 0' in capsys.readouterr().err
