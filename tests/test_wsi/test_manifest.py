"""wsi.manifest: the cohort manifest's round trip, rows kept across runs,
one line per row, and a foreign file refused."""
import csv

import pytest

from pns_mmdet.wsi.manifest import MANIFEST_COLUMNS, CohortManifest


def test_manifest_round_trip_and_kept_rows(tmp_path):
    path = str(tmp_path / 'cohort.csv')
    m = CohortManifest(path)
    m.set('/s/a.tif', 'finished', nuclei=12, seconds=3.14159,
          worker='worker0@h:1')
    m.set('/s/b.tif', 'failed', worker='worker1@h:2',
          error='SlideReadError: /s/b.tif\n  is truncated')
    m.write()
    with open(path, newline='') as f:
        rows = list(csv.reader(f))
    assert rows == [
        list(MANIFEST_COLUMNS),
        ['/s/a.tif', 'finished', '12', '3.14', 'worker0@h:1', ''],
        ['/s/b.tif', 'failed', '0', '0.00', 'worker1@h:2',
         'SlideReadError: /s/b.tif is truncated'],  # one line per row
    ]
    # A later run: a's row replaced in place, a new slide appended, b
    # (not in this run) kept.
    m2 = CohortManifest(path)
    m2.set('/s/a.tif', 'running', worker='worker3@h:9')
    m2.set('/s/c.tif', 'pending')
    m2.write()
    again = CohortManifest(path)
    assert list(again.rows) == ['/s/a.tif', '/s/b.tif', '/s/c.tif']
    assert again.get('/s/a.tif')['status'] == 'running'
    assert again.get('/s/b.tif')['error'].endswith('is truncated')
    with pytest.raises(ValueError, match='status must be one of'):
        again.set('/s/a.tif', 'done')


def test_manifest_of_another_format_refused(tmp_path):
    path = tmp_path / 'cohort.csv'
    path.write_text('id,x,y\n1,2,3\n')
    with pytest.raises(ValueError, match='is not a cohort manifest') as e:
        CohortManifest(str(path))
    assert str(path) in str(e.value) and "'slide'" in str(e.value)
