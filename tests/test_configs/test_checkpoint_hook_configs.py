"""Every config trains with the crash-safe checkpoint hook.

``CrashSafeCheckpointHook`` (pns_mmdet/engine) writes checkpoints and
``last_checkpoint`` atomically and reseeds per iteration so that resumes
continue identically; a leaf config naming mmengine's plain
``CheckpointHook`` would silently lose both.
"""
import glob
import os.path as osp

import pytest
from mmengine.config import Config

import pns_mmdet  # noqa: F401  (registers the hook)
from pns_mmdet.engine import CrashSafeCheckpointHook

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_FILES = sorted(
    p for p in glob.glob(
        osp.join(REPO_ROOT, 'configs', '**', '*.py'), recursive=True)
    if f'{osp.sep}_base_{osp.sep}' not in p)


@pytest.mark.parametrize(
    'config_file', CONFIG_FILES,
    ids=[osp.relpath(p, REPO_ROOT) for p in CONFIG_FILES])
def test_checkpoint_hook_is_crash_safe(config_file):
    hook = Config.fromfile(config_file).default_hooks.checkpoint
    assert hook.type == 'CrashSafeCheckpointHook', config_file


def test_base_runtime_selects_crash_safe_hook():
    from mmdet.registry import HOOKS
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs', '_base_', 'default_runtime.py'))
    hook = HOOKS.build(cfg.default_hooks.checkpoint)
    assert type(hook) is CrashSafeCheckpointHook
    # mmdet's base interval survives the type override.
    assert hook.interval == 1
