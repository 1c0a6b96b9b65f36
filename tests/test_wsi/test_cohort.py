"""wsi.cohort without Ray: the plan (finished slides are not sent
again), settings checks and how Ray errors are reported. The Ray runs are
in tests/test_tools/test_infer_cohort.py."""
import pytest

from pns_mmdet.wsi.cohort import CohortRunner, RunnerSpec, slide_stem

from stub_inferencer import StubInferencer, disc_slide, write_tiny_config


@pytest.fixture(scope='module')
def spec(tmp_path_factory):
    folder = tmp_path_factory.mktemp('cfg')
    return RunnerSpec(write_tiny_config(folder, data_mpp=0.5), 0.5,
                      device='cpu', tile_size=128, overlap=48,
                      read_workers=0, inferencer=StubInferencer)

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


def test_progress_snapshot():
    from pns_mmdet.wsi.cohort import CohortSummary, _snapshot
    summary = CohortSummary(total=5, finished=2, skipped=1, failed=1,
                            nuclei=300)
    live = {0: dict(slide='/s/e.tif', tiles_done=3, tiles_todo=9,
                    nuclei=100)}
    assert _snapshot(summary, live, 8.0) == dict(
        done=4, total=5, failed=1, nuclei=400, nuclei_per_second=50.0,
        running=[('/s/e.tif', 3, 9)])
