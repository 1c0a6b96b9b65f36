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
