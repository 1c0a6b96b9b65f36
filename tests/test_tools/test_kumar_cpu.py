"""tools/kumar_cpu.py (make kumar-cpu): step logic without training."""
import json
import os
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


def _fake_annotations(root):
    (root / 'annotations').mkdir(parents=True)
    for split in ('train', 'val'):
        (root / 'annotations' / f'{split}.json').write_text('{}')


def test_conversion_stamp_guards_reuse_of_the_data(tmp_path, monkeypatch):
    shared = tmp_path / 'shared'
    for folder, _, _ in kumar_cpu.SOURCES:
        for sub in ('images', 'inst_masks'):
            (shared / folder / sub).mkdir(parents=True, exist_ok=True)
    root = tmp_path / 'out'
    calls = []
    monkeypatch.setattr(kumar_cpu, 'run',
                        lambda cmd: (calls.append(cmd), _fake_annotations(
                            root) if len(calls) == 1 else None))
    monkeypatch.setattr(kumar_cpu, 'DATA_ROOT', str(root))
    kumar_cpu.convert(str(shared))
    assert len(calls) == len(kumar_cpu.SOURCES)
    stamp = json.loads((root / 'recipe.json').read_text())
    assert stamp['sources'][2] == [
        'cpm15_train', 'train', ['--include', 'image0[1-7]', '--scale', '2']]
    # Same recipe: reused without a command.
    kumar_cpu.convert(str(shared))
    assert len(calls) == len(kumar_cpu.SOURCES)
    # Converted by another recipe (here: the 20x tiles not rescaled).
    stamp['sources'] = [s[:2] + [[]] for s in stamp['sources']]
    (root / 'recipe.json').write_text(json.dumps(stamp))
    with pytest.raises(SystemExit, match=r'converted data in .*out was made '
                       r'by another recipe \(differs in sources.*remove '):
        kumar_cpu.convert(str(shared))
    # Converted before stamps existed.
    (root / 'recipe.json').unlink()
    with pytest.raises(SystemExit, match='has no recipe stamp'):
        kumar_cpu.convert(str(shared))
    assert len(calls) == len(kumar_cpu.SOURCES)


def _write_config(path, value):
    path.write_text(f'x = {value}\n')
    return str(path)


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
    cfg = _write_config(tmp_path / 'cfg.py', 1)
    part = tmp_path / 'segmentor'
    part.mkdir()
    (part / 'last_checkpoint').write_text(str(part / 'iter_20.pth'))
    # The killed run started under this recipe.
    demo.write_stamp(str(part / 'recipe.json'), demo.recipe_of(
        cfg, [], dict(data=kumar_cpu.data_recipe())))
    out = kumar_cpu.train('segmentor', cfg, str(tmp_path), False)
    assert calls[0][-1] == '--resume'
    assert open(out, 'rb').read() == b'weights'
    # Finished: reused without a command; --retrain starts afresh.
    assert kumar_cpu.train('segmentor', cfg, str(tmp_path), False) == out
    assert len(calls) == 1
    kumar_cpu.train('segmentor', cfg, str(tmp_path), True)
    assert '--resume' not in calls[1]


def test_weights_of_another_recipe_are_not_reused(tmp_path, monkeypatch):
    def fake_run(cmd):
        calls.append(cmd)
        ckpt = tmp_path / 'prompter' / 'iter_180.pth'
        ckpt.write_bytes(b'weights')
        (tmp_path / 'prompter' / 'last_checkpoint').write_text(str(ckpt))

    calls = []
    monkeypatch.setattr(demo, 'run', fake_run)
    cfg = _write_config(tmp_path / 'cfg.py', 1)
    out = kumar_cpu.train('prompter', cfg, str(tmp_path), False)
    assert osp.isfile(out + '.recipe.json')
    # The config was edited after training: stop, do not reuse.
    _write_config(tmp_path / 'cfg.py', 2)
    with pytest.raises(SystemExit, match=r'trained prompter .*prompter.pth '
                       r'was made by another recipe \(differs in '
                       r'config_sha256.*--retrain'):
        kumar_cpu.train('prompter', cfg, str(tmp_path), False)
    # Weights from the same config but other data (the data stamp is part
    # of the weights' recipe).
    _write_config(tmp_path / 'cfg.py', 1)
    monkeypatch.setattr(kumar_cpu, 'SOURCES', kumar_cpu.SOURCES[:1])
    with pytest.raises(SystemExit, match=r'differs in data'):
        kumar_cpu.train('prompter', cfg, str(tmp_path), False)
    # Weights from before the stamps: no silent reuse either.
    os.remove(out + '.recipe.json')
    with pytest.raises(SystemExit, match='has no recipe stamp'):
        kumar_cpu.train('prompter', cfg, str(tmp_path), False)
    assert len(calls) == 1
    # A killed run is resumed only under the recipe it started with.
    os.remove(out)
    _write_config(tmp_path / 'cfg.py', 3)
    with pytest.raises(SystemExit, match=r'interrupted prompter run .*'
                       r'differs in config_sha256.*--retrain'):
        kumar_cpu.train('prompter', cfg, str(tmp_path), False)
    kumar_cpu.train('prompter', cfg, str(tmp_path), True)
    assert len(calls) == 2 and '--resume' not in calls[1]
