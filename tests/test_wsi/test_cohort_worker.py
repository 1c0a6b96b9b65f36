"""wsi.cohort_worker: a worker used as a plain object (Ray only calls
it): a finished slide, a skipped one, and a bad slide as a failed result,
not an exception."""
import os.path as osp

import pytest

from pns_mmdet.wsi.cohort_worker import CohortWorker, RunnerSpec

from stub_inferencer import StubInferencer, disc_slide, write_tiny_config


@pytest.fixture(scope='module')
def spec(tmp_path_factory):
    folder = tmp_path_factory.mktemp('cfg')
    return RunnerSpec(write_tiny_config(folder, data_mpp=0.5), 0.5,
                      device='cpu', tile_size=128, overlap=48,
                      read_workers=0, inferencer=StubInferencer)

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


def test_overwrite_retry_of_the_same_run_resumes(tmp_path, spec):
    """With --overwrite, Ray's retry of a call (same run id) continues the
    journal the first attempt started; a new cohort run starts over."""
    from pns_mmdet.wsi.cohort_worker import OVERWRITE_MARKER
    disc_slide(str(tmp_path / 'a.tif'), (300, 260), 0.5, seed=4)
    slide, out = str(tmp_path / 'a.tif'), str(tmp_path / 'out' / 'a')
    worker = CohortWorker(spec, 0)
    ref = worker.run(slide, out, {})
    assert ref['status'] == 'finished' and ref['tiles_run'] == 12
    inner = worker.runner.inferencer
    calls = []

    def dies_at_tile_6(rgb):  # the first attempt stops after 5 tiles
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError('worker lost')
        return inner(rgb)

    worker.runner.inferencer = dies_at_tile_6
    first = worker.run(slide, out, {}, overwrite=True, run_id='run1')
    assert first['status'] == 'failed' and 'worker lost' in first['error']
    assert osp.isfile(osp.join(out, OVERWRITE_MARKER))
    worker.runner.inferencer = inner
    retry = worker.run(slide, out, {}, overwrite=True, run_id='run1')
    assert retry['status'] == 'finished' and retry['nuclei'] == ref['nuclei']
    assert retry['tiles_resumed'] == 5 and retry['tiles_run'] == 7
    assert not osp.exists(osp.join(out, OVERWRITE_MARKER))
    fresh = worker.run(slide, out, {}, overwrite=True, run_id='run2')
    assert fresh['tiles_resumed'] == 0 and fresh['tiles_run'] == 12
