"""Every config under configs/ loads and builds its model offline, and
none validates on a test file.

Pretrained weights are stripped (``init_cfg``, ``*checkpoint*`` entries), so
nothing is read from disk or the network: random weights only.
"""
import functools
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


@functools.lru_cache(maxsize=None)
def _load(config_file):
    # Parsed once for the tests below (they only read it or copy parts).
    return Config.fromfile(config_file)


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
    cfg = _load(config_file)
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


def annotation_files(loader):
    """(data_root, ann_file) of every dataset in a dataloader config,
    through wrappers (``dataset=`` / ``datasets=[...]``)."""
    found = []

    def walk(node, root):
        if isinstance(node, dict):
            root = node.get('data_root', root)
            if node.get('ann_file'):
                found.append((root or '', node['ann_file']))
            for value in node.values():
                walk(value, root)
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value, root)

    walk(loader, '')
    return found


def validation_problems(cfg):
    """Why a config's validation would score test data ('' if it does not):
    a val annotation file named like a test split, or the test loader's own
    file (unless that file is itself a val split, as in kumar_cpu.py, whose
    dataset has no test split), or a validation set up only in part (the
    runner needs val_dataloader, val_cfg and val_evaluator together)."""
    problems = []
    trio = [cfg.get(k) is None
            for k in ('val_dataloader', 'val_cfg', 'val_evaluator')]
    if len(set(trio)) > 1:
        problems.append('val_dataloader/val_cfg/val_evaluator: set all or '
                        f'none (None: {trio})')
    if cfg.get('val_dataloader') is None:
        return '; '.join(problems)
    tests = set(annotation_files(cfg.get('test_dataloader') or {}))
    for root, ann in annotation_files(cfg.val_dataloader):
        name = osp.basename(ann)
        if 'test' in name.lower():
            problems.append(f'val ann_file {root}{ann} is a test file')
        elif (root, ann) in tests and 'val' not in name.lower():
            problems.append(f'val ann_file {root}{ann} is the test loader\'s')
    return '; '.join(problems)


@pytest.mark.parametrize(
    'config_file', CONFIG_FILES,
    ids=[osp.relpath(p, REPO_ROOT) for p in CONFIG_FILES])
def test_validation_never_reads_a_test_file(config_file):
    # tools/train.py validates whatever val_dataloader names: it must be a
    # split of its own, or validation must be off (all three None).
    assert validation_problems(_load(config_file)) == ''


def test_validation_rule_catches_test_files():
    val = dict(type='ValLoop')
    metric = dict(type='NucleusInstanceMetric')

    def loader(ann, root='data/kumar/'):
        return dict(dataset=dict(data_root=root, ann_file=ann))

    def cfg(val_loader, test_loader, val_cfg=val, val_evaluator=metric):
        return Config(dict(val_dataloader=val_loader, val_cfg=val_cfg,
                           val_evaluator=val_evaluator,
                           test_dataloader=test_loader))

    test = loader('annotations/test.json')
    assert validation_problems(cfg(test, test)) == (
        'val ann_file data/kumar/annotations/test.json is a test file')
    wrapped = dict(dataset=dict(type='ConcatDataset', datasets=[
        loader('annotations/val.json')['dataset'],
        loader('annotations/test2.json', 'data/x/')['dataset']]))
    assert validation_problems(cfg(wrapped, test)) == (
        'val ann_file data/x/annotations/test2.json is a test file')
    fold = loader('annotations/fold3.json')
    assert validation_problems(cfg(fold, fold)) == (
        "val ann_file data/kumar/annotations/fold3.json is the test "
        "loader's")
    assert validation_problems(cfg(None, test, val_cfg=None)) == (
        'val_dataloader/val_cfg/val_evaluator: set all or none (None: '
        '[True, True, False])')
    # Own splits pass; so does a val split that is also the test loader.
    own = loader('annotations/val.json')
    assert validation_problems(cfg(own, test)) == ''
    assert validation_problems(cfg(own, own)) == ''
    assert validation_problems(cfg(None, test, None, None)) == ''
