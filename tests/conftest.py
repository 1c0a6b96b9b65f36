"""Shared pytest fixtures.

Real data lives in ``../shared/data`` beside the repository (never committed,
see README); ``PNS_SHARED_DATA`` overrides the location. Tests that need it
are skipped with a reason where it is absent.
"""
import os
import os.path as osp

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = os.environ.get(
    'PNS_SHARED_DATA', osp.join(osp.dirname(REPO_ROOT), 'shared', 'data'))


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'slow: slower end-to-end or real-data checks (minutes)')


@pytest.fixture(scope='session')
def repo_root() -> str:
    return REPO_ROOT


@pytest.fixture(scope='session')
def shared_data() -> str:
    """Path of ``shared/data``; skips the test when it is absent."""
    if not osp.isdir(SHARED_DATA):
        pytest.skip(f'real data not found at {SHARED_DATA} '
                    '(set PNS_SHARED_DATA to run this test)')
    return SHARED_DATA


@pytest.fixture(scope='session')
def synthetic_coco(tmp_path_factory) -> str:
    """Root of a small synthetic nucleus dataset, generated once per session.

    COCO layout of docs/design.md (``images/``, ``annotations/{train,val,
    test}.json``, ``inst_maps/``, ``class_maps/``): 6 train, 2 val and 2 test
    tiles of 256 x 256 with PanNuke's 5 classes, tissue names and many
    touching/overlapping nuclei (seed 0, deterministic).
    """
    from pns_mmdet.datasets.synthetic import make_synthetic_dataset
    root = str(tmp_path_factory.mktemp('synthetic_coco'))
    make_synthetic_dataset(
        root, num_train=6, num_val=2, num_test=2, size=256, seed=0)
    return root
