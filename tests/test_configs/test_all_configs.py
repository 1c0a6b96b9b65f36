"""Every config under configs/ loads and builds its model offline.

Pretrained weights are stripped (``init_cfg``, ``*checkpoint*`` entries), so
nothing is read from disk or the network: random weights only.
"""
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_FILES = sorted(
    p for p in glob.glob(
        osp.join(REPO_ROOT, 'configs', '**', '*.py'), recursive=True)
    if f'{osp.sep}_base_{osp.sep}' not in p)


def strip_pretrained(node):
    """Recursively drop pretrained-weight references from a config node."""
    if isinstance(node, dict):
        for key in list(node.keys()):
            if key == 'init_cfg' or key.endswith('checkpoint'):
                node[key] = None
            else:
                strip_pretrained(node[key])
    elif isinstance(node, (list, tuple)):
        for item in node:
            strip_pretrained(item)


def test_configs_exist():
    assert CONFIG_FILES, 'no leaf configs found under configs/'


@pytest.mark.parametrize(
    'config_file', CONFIG_FILES,
    ids=[osp.relpath(p, REPO_ROOT) for p in CONFIG_FILES])
def test_config_builds_model(config_file):
    cfg = Config.fromfile(config_file)
    assert cfg.get('default_scope') == 'mmdet'
    assert 'pns_mmdet' in cfg.custom_imports['imports']
    for key in ('train_dataloader', 'test_dataloader', 'test_evaluator'):
        assert key in cfg, f'{config_file} lacks {key}'
    model_cfg = cfg.model.copy()
    strip_pretrained(model_cfg)
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    model = MODELS.build(model_cfg)
    assert type(model).__module__.startswith('pns_mmdet')
    assert sum(p.numel() for p in model.parameters()) > 0
