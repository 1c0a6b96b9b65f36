"""A checkpoint whose unpickling runs code is refused at every entry point.

The file holds real weights plus an object whose ``__reduce__`` calls
``open(marker, 'w')``: full unpickling would create the marker file. It is
loaded through ``tools/test.py`` (``load_from``), ``PromptNucSeg``'s
``prompter_checkpoint`` and ``tools/infer.py --segmentor-checkpoint``. By
default each refuses it with the message naming the file, the refused
global and the opt-in, and the marker never appears; with
``--trust-checkpoint`` (or ``PNS_TRUST_CHECKPOINTS``) it loads, with a
``TrustedCheckpointWarning``. All in-process (no subprocess start-up).
"""
import os.path as osp
import sys
import time

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

import pns_mmdet  # noqa: F401  (registers the safe loader)
from pns_mmdet.engine import (TrustedCheckpointWarning,
                              UntrustedCheckpointError, load_checkpoint_file)
from pns_mmdet.engine.checkpoint import TRUST_ENV

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, osp.join(REPO, 'tests', 'test_tools'))
sys.path.insert(0, osp.join(REPO, 'tests', 'test_reliability'))
from tiny_promptnucseg import write_tiny_config  # noqa: E402
from tool_loading import load_tool  # noqa: E402
from toy_training import ToyDropoutRegressor, toy_config  # noqa: E402



class CreatesMarker:
    """Unpickling this calls ``open(marker, 'w')``: arbitrary code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def write_malicious(path, state_dict, marker) -> str:
    """A checkpoint that loads correctly, plus the payload."""
    torch.save(
        dict(state_dict=state_dict, meta=dict(note=CreatesMarker(marker))),
        str(path))
    return str(path)


@pytest.fixture(autouse=True)
def untrusted_env(monkeypatch):
    """No file is trusted unless a test says so; the tools' additions to
    the environment are undone afterwards."""
    monkeypatch.setenv(TRUST_ENV, '')


def assert_refused_message(text, path):
    assert f'checkpoint "{path}" was refused' in text
    # the refused global (builtins.open pickles as io.open) and the opt-in
    assert 'needs the global(s) io.open,' in text, text
    assert f'pass --trust-checkpoint {path} to the tool' in text
    assert f'set {TRUST_ENV}={path}' in text


@pytest.fixture()
def marker(tmp_path):
    return str(tmp_path / 'pwned.txt')


def test_loader_refuses_then_loads_when_trusted(tmp_path, marker,
                                                monkeypatch):
    path = write_malicious(tmp_path / 'evil.pth',
                           {'w': torch.arange(3.0)}, marker)
    with pytest.raises(UntrustedCheckpointError) as info:
        load_checkpoint_file(path)
    assert_refused_message(str(info.value), path)
    assert not osp.exists(marker)
    # Trusting another file does not trust this one.
    monkeypatch.setenv(TRUST_ENV, str(tmp_path / 'other.pth'))
    with pytest.raises(UntrustedCheckpointError):
        load_checkpoint_file(path)
    assert not osp.exists(marker)
    monkeypatch.setenv(TRUST_ENV, path)
    with pytest.warns(TrustedCheckpointWarning, match='evil.pth'):
        ckpt = load_checkpoint_file(path)
    assert torch.equal(ckpt['state_dict']['w'], torch.arange(3.0))
    assert osp.exists(marker)  # what trusting a file means


def toy_test_config(tmp_path) -> str:
    cfg = toy_config(str(tmp_path / 'work'), max_epochs=1)
    cfg.update(
        test_dataloader=cfg['val_dataloader'],
        test_evaluator=dict(type='ToyMetric'),
        test_cfg=dict(),
        custom_hooks=[])
    path = str(tmp_path / 'toy_test.py')
    Config(cfg).dump(path)
    return path


def run_test_tool(cfg, ckpt, *extra):
    return load_tool('test').main([
        cfg, ckpt, '--cfg-options',
        f'experiment_name=malicious_{time.time_ns()}', *extra
    ])


def test_tools_test_load_from(tmp_path, marker, capsys, monkeypatch):
    monkeypatch.syspath_prepend(HERE)  # custom_imports: toy_training
    cfg = toy_test_config(tmp_path)
    weights = {
        k: torch.full_like(v, 0.5)
        for k, v in ToyDropoutRegressor().state_dict().items()
    }
    path = write_malicious(tmp_path / 'evil.pth', weights, marker)
    assert run_test_tool(cfg, path) == 2
    err = capsys.readouterr().err
    assert err.startswith('[test] error: ')
    assert_refused_message(err, path)
    assert not osp.exists(marker)

    with pytest.warns(TrustedCheckpointWarning, match='evil.pth'):
        assert run_test_tool(cfg, path, '--trust-checkpoint', path) == 0
    assert osp.exists(marker)


def test_tools_train_load_from(tmp_path, marker, capsys, monkeypatch):
    monkeypatch.syspath_prepend(HERE)
    cfg = toy_test_config(tmp_path)
    weights = ToyDropoutRegressor().state_dict()
    path = write_malicious(tmp_path / 'evil.pth', weights, marker)
    argv = [cfg, '--cfg-options', f'load_from={path}',
            f'experiment_name=malicious_{time.time_ns()}']
    assert load_tool('train').main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith('[train] error: ')
    assert_refused_message(err, path)
    assert not osp.exists(marker)
    assert not osp.exists(tmp_path / 'work' / 'epoch_1.pth')

    argv[-1] += '_trusted'
    with pytest.warns(TrustedCheckpointWarning, match='evil.pth'):
        assert load_tool('train').main(argv + ['--trust-checkpoint',
                                               path]) == 0
    assert osp.exists(marker)
    assert osp.isfile(tmp_path / 'work' / 'epoch_1.pth')


def build_promptnucseg(cfg_path, **model_overrides):
    cfg = Config.fromfile(cfg_path)
    cfg.model.update(model_overrides)
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    return MODELS.build(cfg.model)


@pytest.fixture()
def tiny_cfg(tmp_path):
    return write_tiny_config(tmp_path)


def test_promptnucseg_prompter_checkpoint(tmp_path, marker, tiny_cfg,
                                          monkeypatch):
    torch.manual_seed(0)
    prompter = build_promptnucseg(tiny_cfg).prompter.state_dict()
    weights = {k: torch.rand_like(v.float()).to(v.dtype)
               for k, v in prompter.items()}
    path = write_malicious(tmp_path / 'evil_prompter.pth', weights, marker)
    with pytest.raises(UntrustedCheckpointError) as info:
        build_promptnucseg(tiny_cfg, prompter_checkpoint=path)
    assert_refused_message(str(info.value), path)
    assert not osp.exists(marker)

    monkeypatch.setenv(TRUST_ENV, path)
    with pytest.warns(TrustedCheckpointWarning, match='evil_prompter.pth'):
        model = build_promptnucseg(tiny_cfg, prompter_checkpoint=path)
    for k, v in model.prompter.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert osp.exists(marker)


def test_tools_infer_segmentor_checkpoint(tmp_path, marker, tiny_cfg,
                                          capsys):
    infer = load_tool('infer')
    segmentor = build_promptnucseg(tiny_cfg).segmentor.state_dict()
    path = write_malicious(tmp_path / 'evil_segmentor.pth', segmentor,
                           marker)
    images = tmp_path / 'images'
    images.mkdir()
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(images / 'a.png')
    args = [tiny_cfg, str(images), '--device', 'cpu',
            '--segmentor-checkpoint', path]
    assert infer.main(args + ['--out-dir', str(tmp_path / 'o1')]) == 2
    err = capsys.readouterr().err
    assert '[infer] error: cannot build the model' in err
    assert_refused_message(err, path)
    assert not osp.exists(marker)
    assert not osp.exists(tmp_path / 'o1' / 'predictions_coco.json')

    with pytest.warns(TrustedCheckpointWarning, match='evil_segmentor.pth'):
        code = infer.main(args + ['--out-dir', str(tmp_path / 'o2'),
                                  '--trust-checkpoint', path])
    assert code == 0
    assert osp.isfile(tmp_path / 'o2' / 'a_inst.png')
    assert osp.exists(marker)
