"""wsi.cohort without Ray: the manifest, the plan (finished slides are not
sent again) and a worker used as a plain object (a bad slide is a failed
result, not an exception). The Ray runs are in
tests/test_tools/test_infer_cohort.py."""
import csv
import os.path as osp

import pytest

from pns_mmdet.wsi.cohort import (MANIFEST_COLUMNS, CohortManifest,
                                  CohortRunner, CohortWorker, RunnerSpec,
                                  slide_stem)

from stub_inferencer import StubInferencer, disc_slide, write_tiny_config


@pytest.fixture(scope='module')
def spec(tmp_path_factory):
    folder = tmp_path_factory.mktemp('cfg')
    return RunnerSpec(write_tiny_config(folder, data_mpp=0.5), 0.5,
                      device='cpu', tile_size=128, overlap=48,
                      read_workers=0, inferencer=StubInferencer)


def test_manifest_round_trip_and_kept_rows(tmp_path):
    path = str(tmp_path / 'cohort.csv')
    m = CohortManifest(path)
    m.set('/s/a.tif', 'finished', nuclei=12, seconds=3.14159,
          worker='worker0@h:1')
    m.set('/s/b.tif', 'failed', worker='worker1@h:2',
          error='SlideReadError: /s/b.tif\n  is truncated')
    m.write()
    with open(path, newline='') as f:
        rows = list(csv.reader(f))
    assert rows == [
        list(MANIFEST_COLUMNS),
        ['/s/a.tif', 'finished', '12', '3.14', 'worker0@h:1', ''],
        ['/s/b.tif', 'failed', '0', '0.00', 'worker1@h:2',
         'SlideReadError: /s/b.tif is truncated'],  # one line per row
    ]
    # A later run: a's row replaced in place, a new slide appended, b
    # (not in this run) kept.
    m2 = CohortManifest(path)
    m2.set('/s/a.tif', 'running', worker='worker3@h:9')
    m2.set('/s/c.tif', 'pending')
    m2.write()
    again = CohortManifest(path)
    assert list(again.rows) == ['/s/a.tif', '/s/b.tif', '/s/c.tif']
    assert again.get('/s/a.tif')['status'] == 'running'
    assert again.get('/s/b.tif')['error'].endswith('is truncated')
    with pytest.raises(ValueError, match='status must be one of'):
        again.set('/s/a.tif', 'done')


def test_manifest_of_another_format_refused(tmp_path):
    path = tmp_path / 'cohort.csv'
    path.write_text('id,x,y\n1,2,3\n')
    with pytest.raises(ValueError, match='is not a cohort manifest') as e:
        CohortManifest(str(path))
    assert str(path) in str(e.value) and "'slide'" in str(e.value)


def test_plan_skips_finished_slides(tmp_path, spec):
    disc_slide(str(tmp_path / 'a.tif'), (256, 256), 0.5, seed=0)
    disc_slide(str(tmp_path / 'b.tif'), (256, 256), 0.5, seed=1)
    out = tmp_path / 'out'
    runner = CohortRunner(spec, str(out))
    slides = [str(tmp_path / 'a.tif'), str(tmp_path / 'b.tif')]
    todo, done = runner.plan(slides)
    assert todo == [(s, slide_stem(s)) for s in slides] and done == []
    spec.build().run(slides[0], str(out / 'a'))
    todo, done = runner.plan(slides)
    assert todo == [(slides[1], 'b')] and done == [(slides[0], 'a')]
    todo, _ = runner.plan(slides, overwrite=True)
    assert len(todo) == 2
    with pytest.raises(ValueError, match='same folder'):
        runner.plan(slides, stems=['x', 'x'])
    assert slide_stem('/d/a.ome.tiff') == 'a.ome'


def test_runner_settings_checked(spec):
    with pytest.raises(ValueError, match='workers'):
        CohortRunner(spec, 'out', workers=0)
    with pytest.raises(ValueError, match='cpus_per_worker'):
        CohortRunner(spec, 'out', cpus_per_worker=0)
    with pytest.raises(ValueError, match='gpus_per_worker'):
        CohortRunner(spec, 'out', gpus_per_worker=-1)


def test_worker_runs_slides_and_reports_bad_ones(tmp_path, spec):
    _, n = disc_slide(str(tmp_path / 'a.tif'), (300, 260), 0.5, seed=3)
    (tmp_path / 'bad.svs').write_bytes(b'no slide here' * 50)
    worker = CohortWorker(spec, 7)
    assert worker.info().startswith('worker7@')
    res = worker.run(str(tmp_path / 'a.tif'), str(tmp_path / 'out' / 'a'),
                     dict(slide_mpp=None, tissue_mask=None, roi=None))
    assert res['status'] == 'finished' and res['nuclei'] == n
    assert res['error'] == '' and res['worker'] == worker.info()
    # x starts 0, 80, 160, 172; y 0, 80, 132.
    assert res['tiles_run'] == 12 and res['tiles_resumed'] == 0
    assert worker.status() == {}  # idle again
    again = worker.run(str(tmp_path / 'a.tif'),
                       str(tmp_path / 'out' / 'a'), {})
    assert again['status'] == 'skipped' and again['nuclei'] == n
    bad = worker.run(str(tmp_path / 'bad.svs'),
                     str(tmp_path / 'out' / 'bad'), {})
    assert bad['status'] == 'failed' and bad['nuclei'] == 0
    assert bad['error'].startswith('Slide') and 'bad.svs' in bad['error']
    assert osp.isfile(tmp_path / 'out' / 'a' / 'run.json')


def test_ray_errors_reported_by_their_user_exception():
    """A worker whose model cannot be built dies in Ray's creation task;
    the message shown is the remote exception line, not Ray's wrapper."""
    from pns_mmdet.wsi.cohort import _short
    err = RuntimeError(
        'The actor died because of an error raised in its creation task, '
        'ray::CohortWorker.__init__() (pid=1)\nTraceback (most recent call '
        'last):\n  File "x.py", line 3, in f\n    raise ValueError(\n'
        'ValueError: cfg.py: model type is \'X\'; the inferencer needs a '
        'PromptNucSeg config\n')
    assert _short(err) == ("ValueError: cfg.py: model type is 'X'; the "
                           'inferencer needs a PromptNucSeg config')
    died = RuntimeError('The actor is dead because its worker process has '
                        'died.\n\tpid: 12\n\tip: 10.0.0.2')
    assert _short(died) == ('The actor is dead because its worker process '
                            'has died.')
