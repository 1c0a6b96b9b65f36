"""tools/kumar_cpu.py (make kumar-cpu): step logic without training."""
import os.path as osp

import pytest
from tool_loading import load_tool

kumar_cpu = load_tool('kumar_cpu')
demo = __import__('demo')  # the module kumar_cpu's train_part lives in


def test_missing_source_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(kumar_cpu, 'DATA_ROOT', str(tmp_path / 'kumar_cpu'))
    (tmp_path / 'shared' / 'monuseg2018_test' / 'images').mkdir(parents=True)
    with pytest.raises(SystemExit, match=r'monuseg2018_test.inst_masks is '
                       'missing: point --shared-data'):
        kumar_cpu.convert(str(tmp_path / 'shared'))


def test_conversion_commands_append_the_second_train_source(
        tmp_path, monkeypatch):
    shared = tmp_path / 'shared'
    for folder, _, _ in kumar_cpu.SOURCES:
        for sub in ('images', 'inst_masks'):
            (shared / folder / sub).mkdir(parents=True, exist_ok=True)
    calls = []
    monkeypatch.setattr(kumar_cpu, 'run', calls.append)
    monkeypatch.setattr(kumar_cpu, 'DATA_ROOT', str(tmp_path / 'out'))
    kumar_cpu.convert(str(shared))
    tails = [cmd[4:] for cmd in calls]
    out = str(tmp_path / 'out')
    # CPM-15's 20x tiles (image01-07) are converted at 2x, into the same
    # train split as the rest.
    assert tails == [
        [out, '--split', 'train'],
        [out, '--split', 'train', '--exclude', 'image0[1-7]', '--append'],
        [out, '--split', 'train', '--include', 'image0[1-7]', '--scale', '2',
         '--append'],
        [out, '--split', 'val']]
    assert [osp.basename(osp.dirname(cmd[2])) for cmd in calls] == [
        'monuseg2018_test', 'cpm15_train', 'cpm15_train',
        'monuseg2018_train_extra']


def test_train_resumes_a_killed_run_and_reuses_finished_weights(
        tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd):
        calls.append(cmd)
        (tmp_path / 'segmentor').mkdir(exist_ok=True)
        ckpt = tmp_path / 'segmentor' / 'iter_240.pth'
        ckpt.write_bytes(b'weights')
        (tmp_path / 'segmentor' / 'last_checkpoint').write_text(str(ckpt))

    monkeypatch.setattr(demo, 'run', fake_run)
    part = tmp_path / 'segmentor'
    part.mkdir()
    (part / 'last_checkpoint').write_text(str(part / 'iter_20.pth'))
    out = kumar_cpu.train('segmentor', 'cfg.py', str(tmp_path), False)
    assert calls[0][-1] == '--resume'
    assert open(out, 'rb').read() == b'weights'
    # Finished: reused without a command; --retrain starts afresh.
    assert kumar_cpu.train('segmentor', 'cfg.py', str(tmp_path), False) == out
    assert len(calls) == 1
    kumar_cpu.train('segmentor', 'cfg.py', str(tmp_path), True)
    assert '--resume' not in calls[1]
