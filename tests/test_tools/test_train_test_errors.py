"""tools/train.py and tools/test.py: unusable inputs and output folders give
exit code 2 and one '[tool] error:' line before any model work (in-process,
with the toy model of tests/test_engine)."""
import os.path as osp
import sys

import pytest
from mmengine.config import Config

from tool_loading import load_tool

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.join(osp.dirname(HERE), 'test_engine'))
from toy_training import toy_config  # noqa: E402


@pytest.fixture()
def toy_cfg(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(osp.join(osp.dirname(HERE), 'test_engine'))
    cfg = toy_config(str(tmp_path / 'work'), max_epochs=1)
    cfg.update(test_dataloader=cfg['val_dataloader'],
               test_evaluator=dict(type='ToyMetric'), test_cfg=dict())
    path = str(tmp_path / 'toy.py')
    Config(cfg).dump(path)
    return path


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_unwritable_work_dir(tool, toy_cfg, tmp_path, capsys):
    blocker = tmp_path / 'a_file'
    blocker.write_text('x')
    work = blocker / 'work'
    assert load_tool(tool).main([toy_cfg, '--work-dir', str(work)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f'[{tool}] error: --work-dir "{work}" cannot be '
                          'written'), err
    assert 'Traceback' not in err


def test_test_out_checks(toy_cfg, tmp_path, capsys):
    tool = load_tool('test')
    assert tool.main([toy_cfg, '--out', str(tmp_path / 'p.json')]) == 2
    assert '--out must be a .pkl file' in capsys.readouterr().err
    blocker = tmp_path / 'a_file'
    blocker.write_text('x')
    out = blocker / 'preds.pkl'
    assert tool.main([toy_cfg, '--work-dir', str(tmp_path / 'w'),
                      '--out', str(out)]) == 2
    err = capsys.readouterr().err
    assert f'[test] error: --out folder "{blocker}" cannot be written' in err


def test_missing_checkpoint_argument(toy_cfg, tmp_path, capsys):
    assert load_tool('test').main([toy_cfg, str(tmp_path / 'no.pth')]) == 2
    err = capsys.readouterr().err
    assert f'[test] error: checkpoint "{tmp_path / "no.pth"}" does not ' \
           'exist' in err
