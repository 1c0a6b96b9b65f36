"""tools/infer_cohort.py on a local Ray instance: outputs equal the slide
runner's, a worker killed mid-slide is replaced and the slide resumed, bad
slides are failed rows, bad addresses and output folders clear errors.

The model is the exact disc-segmenting stub of tests/test_wsi (the Ray
workers import it through PYTHONPATH); the fault is injected by
tests/test_wsi/cohort_faults.py.
"""
import csv
import json
import os
import os.path as osp
import re
import socket
import sys

import numpy as np
import pytest

from tool_loading import REPO, load_tool

pytest.importorskip('ray', reason='ray (requirements/runtime.txt) is not '
                    'installed')

WSI_TESTS = osp.join(REPO, 'tests', 'test_wsi')
sys.path.insert(0, WSI_TESTS)
from cohort_faults import KILL_ENV, DyingStubInferencer  # noqa: E402
from stub_inferencer import (disc_slide, stub_inferencer,  # noqa: E402
                             write_tiny_config)

infer_cohort = load_tool('infer_cohort')
TILES = ['--tile-size', '256', '--overlap', '64', '--read-workers', '0']


def read_outputs(folder):
    """CSV rows, store records and GeoJSON features of a finished slide."""
    from pns_mmdet.wsi.store import NucleusStore
    with open(osp.join(folder, 'nuclei.csv'), newline='') as f:
        rows = list(csv.DictReader(f))
    store = NucleusStore(osp.join(folder, 'nuclei.db'), mode='r')
    try:
        recs = [(r.id, r.x, r.y, r.box, r.label, r.score,
                 np.asarray(r.polygon).round(6).tolist(), r.point,
                 r.measurements) for r in store.iter_records()]
    finally:
        store.close()
    with open(osp.join(folder, 'nuclei.geojson')) as f:
        features = json.load(f)
    return rows, recs, features


def read_manifest(out):
    with open(osp.join(out, 'cohort.csv'), newline='') as f:
        return list(csv.DictReader(f))


@pytest.fixture()
def cohort(tmp_path_factory):
    """Three slides (two disc slides, one synthetic H&E pyramid), a file
    that is no slide, and each good slide run alone by the slide runner."""
    from pns_mmdet.wsi.runner import SlideRunner
    from pns_mmdet.wsi.synthetic_slide import make_synthetic_slide
    root = tmp_path_factory.mktemp('cohort')
    slides = root / 'slides'
    slides.mkdir()
    disc_slide(str(slides / 'a.tif'), (512, 448), 0.5, seed=1)
    make_synthetic_slide(str(slides / 'b.tif'), size=1024, mpp=0.5, seed=0,
                         compression='deflate')
    disc_slide(str(slides / 'c.tif'), (448, 512), 0.5, seed=2)
    (slides / 'broken.svs').write_bytes(b'not a slide' * 100)
    config = write_tiny_config(root, data_mpp=0.5)
    runner = SlideRunner(stub_inferencer(config), 0.5, tile_size=256,
                         overlap=64, config_name=osp.abspath(config))
    ref = {}
    for name in 'abc':
        summary = runner.run(str(slides / f'{name}.tif'),
                             str(root / 'ref' / name))
        ref[name] = (summary, read_outputs(str(root / 'ref' / name)))
    return root, slides, config, ref


@pytest.fixture()
def stub_model(monkeypatch):
    import pns_mmdet.apis as apis
    monkeypatch.setattr(apis, 'NucleusInferencer', DyingStubInferencer)
    # Ray's worker processes inherit the environment of ray.init.
    path = os.environ.get('PYTHONPATH', '')
    monkeypatch.setenv('PYTHONPATH', os.pathsep.join(
        p for p in (WSI_TESTS, path) if p))


def test_cohort_with_a_killed_worker_equals_slides_run_alone(
        cohort, stub_model, monkeypatch, capsys):
    """Issue acceptance: 2 workers on a local Ray instance, one worker
    killed (os._exit) after 4 tiles of slide b: the cohort finishes, every
    slide's outputs equal the slide runner's alone, the manifest lists
    each slide once, the unreadable file is a failed row; a second run
    skips the finished slides."""
    root, slides, config, ref = cohort
    flag = root / 'killed'
    monkeypatch.setenv(KILL_ENV, f'b.tif:4:{flag}')
    out = str(root / 'out')
    code = infer_cohort.main([config, str(slides), '--out-dir', out,
                              '--workers', '2'] + TILES)
    captured = capsys.readouterr()
    assert code == 1, captured.err[-3000:]  # broken.svs failed
    assert flag.is_file()  # a worker did die mid-slide
    rows = read_manifest(out)
    assert sorted(r['slide'] for r in rows) == sorted(
        str(slides / n) for n in ('a.tif', 'b.tif', 'broken.svs', 'c.tif'))
    by_name = {osp.basename(r['slide']): r for r in rows}
    bad = by_name['broken.svs']
    assert bad['status'] == 'failed' and 'broken.svs' in bad['error']
    assert bad['nuclei'] == '0' and bad['worker'].startswith('worker')
    for name in 'abc':
        row = by_name[f'{name}.tif']
        summary, outputs = ref[name]
        assert row['status'] == 'finished' and row['error'] == ''
        assert int(row['nuclei']) == summary.nuclei > 50
        assert read_outputs(osp.join(out, name)) == outputs
    # Slide b continued from its journal in the replacement worker.
    run_b = json.loads(open(osp.join(out, 'b', 'run.json')).read())
    assert run_b['tiles_resumed'] == 4
    assert run_b['tiles_run'] == ref['b'][0].tiles_run - 4
    # Which worker runs which slide depends on when each is ready.
    host = socket.gethostname()
    for name in 'abc':
        assert re.fullmatch(rf'worker[01]@{re.escape(host)}:\d+',
                            by_name[f'{name}.tif']['worker'])
    # ... finished by the replacement of the process that died.
    dead = flag.read_text()
    assert not by_name['b.tif']['worker'].endswith(f':{dead}')
    assert 'b.tif: ' in captured.out and '4 tiles resumed' in captured.out
    assert '3 slide(s) finished' in captured.out
    assert '1 failed of 4' in captured.out

    # Same command on the good slides: nothing to run, Ray not started.
    stamp = osp.getmtime(osp.join(out, 'a', 'nuclei.csv'))
    code = infer_cohort.main(
        [config] + [str(slides / f'{n}.tif') for n in 'abc'] +
        ['--out-dir', out, '--no-progress'] + TILES)
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    assert captured.out.count('already finished in') == 3
    assert osp.getmtime(osp.join(out, 'a', 'nuclei.csv')) == stamp
    again = read_manifest(out)
    assert sorted(r['slide'] for r in again) == sorted(by_name[n]['slide']
                                                      for n in by_name)
    assert {r['slide']: r for r in again} == {r['slide']: r for r in rows}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_unreachable_address_is_a_clear_error(tmp_path, capsys):
    import ray
    disc_slide(str(tmp_path / 's.tif'), (128, 128), 0.5)
    config = write_tiny_config(tmp_path, data_mpp=0.5)
    address = f'127.0.0.1:{free_port()}'
    code = infer_cohort.main([config, str(tmp_path / 's.tif'), '--out-dir',
                              str(tmp_path / 'out'), '--address', address])
    err = capsys.readouterr().err
    assert code == 2
    assert f'cannot reach the Ray head at {address}' in err
    assert 'ray start --head' in err
    assert not ray.is_initialized()
    code = infer_cohort.main([config, str(tmp_path / 's.tif'), '--out-dir',
                              str(tmp_path / 'out'), '--address', 'head'])
    assert code == 2
    assert '--address must be "auto" or HOST:PORT' in capsys.readouterr().err


def test_unwritable_out_dir_detected_before_ray(tmp_path, capsys):
    import ray
    disc_slide(str(tmp_path / 's.tif'), (128, 128), 0.5)
    config = write_tiny_config(tmp_path, data_mpp=0.5)
    (tmp_path / 'file').write_text('a file, not a folder')
    out = str(tmp_path / 'file' / 'out')
    code = infer_cohort.main([config, str(tmp_path / 's.tif'), '--out-dir',
                              out])
    err = capsys.readouterr().err
    assert code == 2
    assert f'--out-dir "{out}" cannot be written' in err
    assert not ray.is_initialized()


def test_usage_errors(tmp_path, capsys):
    disc_slide(str(tmp_path / 's.tif'), (128, 128), 0.5)
    config = write_tiny_config(tmp_path, data_mpp=0.5)
    base = [config, str(tmp_path / 's.tif'), '--out-dir',
            str(tmp_path / 'out')]
    for extra, message in [
        (['--workers', '0'], '--workers must be >= 1'),
        (['--cpus-per-worker', '0'], '--cpus-per-worker must be > 0'),
        (['--device', 'cuda'], '--device cuda needs --gpus-per-worker'),
    ]:
        assert infer_cohort.main(base + extra) == 2
        assert message in capsys.readouterr().err
    assert infer_cohort.main([config, str(tmp_path / 'none*.svs'),
                              '--out-dir', str(tmp_path / 'out')]) == 2
    assert 'matches no file' in capsys.readouterr().err
    nompp = write_tiny_config(tmp_path, name='nompp.py')
    assert infer_cohort.main([nompp] + base[1:]) == 2
    assert 'has no data_mpp' in capsys.readouterr().err
    assert not osp.exists(tmp_path / 'out' / 'cohort.csv')
