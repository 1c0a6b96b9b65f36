"""tools/infer_wsi.py: bad slides, the model's resolution, and resuming a
run killed with SIGKILL.

The model is the tool tests' tiny PromptNucSeg with the exact disc
segmenting stub parts of tests/test_wsi/stub_inferencer.py (in-process via
monkeypatch; in subprocesses through that file's launcher).
"""
import csv
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tool_loading import REPO, load_tool

sys.path.insert(0, osp.join(REPO, 'tests', 'test_wsi'))
from stub_inferencer import (StubInferencer, disc_slide,  # noqa: E402
                             write_tiny_config)

infer_wsi = load_tool('infer_wsi')
LAUNCHER = osp.join(REPO, 'tests', 'test_wsi', 'stub_inferencer.py')


@pytest.fixture()
def stub_model(monkeypatch):
    import pns_mmdet.apis as apis
    monkeypatch.setattr(apis, 'NucleusInferencer', StubInferencer)


def test_bad_slides_reported_and_others_go_on(tmp_path, stub_model,
                                              capsys):
    slides = tmp_path / 'slides'
    slides.mkdir()
    _, n = disc_slide(str(slides / 'good.tif'), (420, 400), 0.5, seed=0)
    disc_slide(str(slides / 'nompp.tif'), (200, 200), None, seed=1)
    (slides / 'garbage.svs').write_bytes(b'not a slide at all' * 100)
    data = (slides / 'good.tif').read_bytes()
    (slides / 'truncated.tif').write_bytes(data[:len(data) // 3])
    (slides / 'notes.txt').write_text('not a slide extension')
    out = tmp_path / 'out'
    code = infer_wsi.main([
        write_tiny_config(tmp_path, data_mpp=0.5),
        str(slides), '--out-dir', str(out), '--workers', '0',
        '--tile-size', '128', '--overlap', '48'
    ])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    for name in ('garbage.svs', 'truncated.tif', 'nompp.tif'):
        assert f'failed {slides / name}' in captured.err
    assert '--slide-mpp' in captured.err  # the slide without MPP
    assert f'good.tif: {n} nuclei' in captured.out
    assert '1 slide(s), ' + str(n) + ' nuclei' in captured.out
    assert '3 failed' in captured.out
    good = out / 'good'
    for name in ('nuclei.geojson', 'nuclei.csv', 'nuclei.db',
                 'tissue_mask.png', 'thumbnail_overlay.png', 'run.json'):
        assert (good / name).is_file(), name
    # The three nucleus files describe the same nuclei, id for id.
    with open(good / 'nuclei.csv', newline='') as f:
        csv_ids = [int(r['id']) for r in csv.DictReader(f)]
    geo = json.loads((good / 'nuclei.geojson').read_text())
    geo_ids = [f['properties']['measurements']['Nucleus ID']
               for f in geo['features']]
    from pns_mmdet.wsi.store import NucleusStore
    with NucleusStore(str(good / 'nuclei.db')) as store:
        db_ids = [r.id for r in store]
    assert csv_ids == geo_ids == db_ids == list(range(1, n + 1))
    run = json.loads((good / 'run.json').read_text())
    assert run['status'] == 'finished' and run['nuclei'] == n
    assert run['model_mpp'] == 0.5 and run['slide_mpp'] == 0.5
    assert set(run['seconds_by_stage']) >= {
        'read', 'prompter', 'encoder', 'decoder', 'stitching', 'writing'}
    assert not (out / 'garbage').exists() or not any(
        (out / 'garbage').glob('nuclei.*'))
    # Same command again: the finished slide is skipped, not redone.
    code = infer_wsi.main([
        write_tiny_config(tmp_path, data_mpp=0.5),
        str(slides / 'good.tif'), '--out-dir', str(out), '--workers', '0'
    ])
    assert code == 0
    assert 'already finished' in capsys.readouterr().out


def test_model_resolution_required(tmp_path, stub_model, capsys):
    disc_slide(str(tmp_path / 's.tif'), (400, 400), 0.5, seed=0)
    config = write_tiny_config(tmp_path)  # no data_mpp
    args = [config, str(tmp_path / 's.tif'), '--out-dir',
            str(tmp_path / 'out'), '--workers', '0']
    assert infer_wsi.main(args) == 2
    err = capsys.readouterr().err
    assert 'has no data_mpp' in err and '--model-mpp' in err
    assert infer_wsi.main(args + ['--model-mpp', '0.5']) == 0
    assert (tmp_path / 'out' / 's' / 'nuclei.csv').is_file()


def test_usage_errors(tmp_path, capsys):
    config = write_tiny_config(tmp_path, data_mpp=0.5)
    code = infer_wsi.main([config, str(tmp_path / 'none*.svs'),
                           '--out-dir', str(tmp_path / 'out')])
    assert code == 2
    assert 'matches no file' in capsys.readouterr().err
    for name in ('a.tif', 'b.tif'):
        disc_slide(str(tmp_path / name), (64, 64), 0.5)
    code = infer_wsi.main([config, str(tmp_path / 'a.tif'),
                           str(tmp_path / 'b.tif'), '--out-dir',
                           str(tmp_path / 'out'), '--tissue-mask',
                           str(tmp_path / 'a.tif')])
    assert code == 2
    assert 'belongs to one slide' in capsys.readouterr().err
    code = infer_wsi.main([config, str(tmp_path / 'a.tif'), '--out-dir',
                           str(tmp_path / 'out'), '--tile-size', '256',
                           '--overlap', '256'])
    assert code == 2
    assert '--overlap < --tile-size' in capsys.readouterr().err


# --------------------------------------------------------------- resume
def read_outputs(folder):
    """CSV rows, store records and GeoJSON features of a finished slide."""
    from pns_mmdet.wsi.store import NucleusStore
    with open(folder / 'nuclei.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    store = NucleusStore(str(folder / 'nuclei.db'), mode='r')
    try:
        recs = [(r.id, r.x, r.y, r.box, r.label, r.score,
                 np.asarray(r.polygon).round(6).tolist(), r.point)
                for r in store.iter_records()]
    finally:
        store.close()
    features = json.loads((folder / 'nuclei.geojson').read_text())
    return rows, recs, features


def done_tiles(partial):
    from pns_mmdet.wsi.store import NucleusStore
    if not osp.exists(partial):
        return 0
    try:
        store = NucleusStore(partial, mode='r')
        try:
            return len(store.done_tiles())
        finally:
            store.close()
    except Exception:  # noqa: BLE001  (the writer holds a lock)
        return 0


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path):
    """Issue acceptance: kill the CLI (SIGKILL) after some tiles, start it
    again, and get exactly the outputs of an uninterrupted run."""
    slide = tmp_path / 'slide.tif'
    disc_slide(str(slide), (1000, 800), 0.5, seed=7, spacing=45)
    config = write_tiny_config(tmp_path, data_mpp=0.5)

    def command(out, workers):
        return [sys.executable, LAUNCHER, config, str(slide), '--out-dir',
                str(out), '--tile-size', '256', '--overlap', '64',
                '--workers', str(workers), '--no-progress']

    env = dict(os.environ, OMP_NUM_THREADS='1')
    ref = subprocess.run(command(tmp_path / 'ref', 0), cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-3000:]

    out = tmp_path / 'resumed'
    partial = str(out / 'slide' / '.nuclei.db.partial')
    slow = dict(env, PNS_STUB_SLEEP='0.4')  # >= 0.4 s per tile
    proc = subprocess.Popen(command(out, 1), cwd=REPO, env=slow,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while done_tiles(partial) < 6 and proc.poll() is None and \
            time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = done_tiles(partial)
    # x starts 0, 192, 384, 576, 744; y 0, 192, 384, 544: 20 tiles.
    assert 6 <= killed_at < 20
    assert not (out / 'slide' / 'nuclei.csv').exists()  # not finished
    again = subprocess.run(command(out, 1), cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    run = json.loads((out / 'slide' / 'run.json').read_text())
    assert run['tiles_resumed'] == killed_at
    assert run['tiles_run'] == 20 - killed_at
    assert not osp.exists(partial)

    rows_a, recs_a, geo_a = read_outputs(tmp_path / 'ref' / 'slide')
    rows_b, recs_b, geo_b = read_outputs(out / 'slide')
    assert len(recs_a) > 100
    assert rows_a == rows_b
    assert recs_a == recs_b
    assert geo_a == geo_b
