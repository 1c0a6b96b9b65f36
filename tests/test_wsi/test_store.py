"""NucleusStore: exact region queries, atomic tiles, resume after SIGKILL."""
import os.path as osp
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from pns_mmdet.wsi.store import NucleusRecord, NucleusStore

STORE_PY = osp.join(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))), 'pns_mmdet', 'wsi', 'store.py')


def _record(rid, x, y, r=3.0, label=0):
    ang = np.linspace(0, 2 * np.pi, 9)[:-1]
    poly = np.stack([x + r * np.cos(ang), y + r * np.sin(ang)], axis=1)
    return NucleusRecord(
        id=rid, x=float(x), y=float(y),
        box=(x - r, y - r, x + r, y + r), label=label,
        class_name=f'class{label}', score=0.5 + rid % 5 / 10,
        polygon=poly, point=(float(x) + 0.7, float(y) - 0.3),
        measurements={'area_um2': 1.5 * rid, 'eosin_od': 0.1})


def _random_records(n, seed=0, start=1):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 1000, (n, 2))
    xy[:40] = np.round(xy[:40] / 100) * 100  # exactly on query borders
    xy[40:60] = np.round(xy[40:60] / 100) * 100 + 1e-9  # not float32
    return [_record(start + i, x, y, label=i % 3)
            for i, (x, y) in enumerate(xy)]


@pytest.fixture
def filled(tmp_path):
    recs = _random_records(400)
    path = str(tmp_path / 'nuclei.db')
    with NucleusStore(path, 'a') as s:
        for t in range(4):
            s.add_tile(t, recs[t * 100:(t + 1) * 100])
        s.add_tile(4, [])
    return path, recs


def test_roundtrip(filled):
    path, recs = filled
    with NucleusStore(path) as s:
        assert len(s) == 400 and s.max_id() == 400
        assert s.done_tiles() == {0, 1, 2, 3, 4}
        got = list(s.iter_records(batch=7))
        assert got == recs  # exact floats, polygons, measurements
        assert list(s) == recs
        assert got[0].area == pytest.approx(recs[0].geometry().area)
        with pytest.raises(ValueError, match='read only'):
            s.add_tile(9, [])
    raw = sqlite3.connect(path)
    cols = [r[1] for r in raw.execute('PRAGMA table_info(nuclei)')]
    assert cols[:12] == ['id', 'tile', 'x', 'y', 'x0', 'y0', 'x1', 'y1',
                         'label', 'class_name', 'score', 'area']
    raw.close()


def test_query_is_exactly_centroid_in_region(filled):
    path, recs = filled
    xy = np.array([(r.x, r.y) for r in recs])
    ids = np.array([r.id for r in recs])
    rng = np.random.default_rng(1)
    with NucleusStore(path) as s:
        regions = [(100, 200, 300, 500), (0, 0, 1000, 1000),
                   (400, 400, 400, 700)]  # last: empty (x0 == x1)
        regions += [tuple(np.sort(rng.uniform(-50, 1050, 2)).tolist() +
                          np.sort(rng.uniform(-50, 1050, 2)).tolist())
                    for _ in range(30)]
        for x0, x1, y0, y1 in [(a, c, b, d) for a, b, c, d in regions[:3]] \
                + regions[3:]:
            inside = (xy[:, 0] >= x0) & (xy[:, 0] < x1) & \
                (xy[:, 1] >= y0) & (xy[:, 1] < y1)
            got = [r.id for r in s.query(x0, y0, x1, y1)]
            assert got == sorted(ids[inside].tolist())
        # A grid of queries partitions the nuclei (half-open borders).
        seen = []
        for gx in range(0, 1100, 100):  # 1000 itself occurs (rounded)
            for gy in range(0, 1100, 100):
                seen += [r.id for r in s.query(gx, gy, gx + 100, gy + 100)]
        assert sorted(seen) == ids.tolist()


def test_near(filled):
    path, recs = filled
    pts = np.array([r.point for r in recs])
    cen = np.array([(r.x, r.y) for r in recs])
    with NucleusStore(path) as s:
        for x, y, rad in [(500.7, 499.7, 30.0), (100.7, 99.7, 0.0),
                          (0, 0, 80.0)]:
            for by, ref in (('point', pts), ('centroid', cen)):
                d2 = ((ref - (x, y))**2).sum(1)
                want = [recs[i].id for i in np.lexsort(
                    ([r.id for r in recs], d2)) if d2[i] <= rad * rad]
                assert [r.id for r in s.near(x, y, rad, by=by)] == want
        # Radius 0 finds a nucleus whose point is exactly there.
        assert [r.id for r in s.near(*recs[7].point, 0.0)] == [recs[7].id]
        with pytest.raises(ValueError, match='by must be'):
            s.near(0, 0, 1, by='box')


def test_add_tile_is_all_or_nothing(filled):
    path, recs = filled
    with NucleusStore(path, 'a') as s:
        bad = _record(1000, 5, 5)
        bad.polygon = bad.polygon[:2]
        with pytest.raises(ValueError, match='NucleusRecord 1000: polygon'):
            s.add_tile(7, [_record(999, 1, 1), bad])
        with pytest.raises(ValueError, match='id of tile 7'):
            s.add_tile(7, [_record(998, 1, 1), _record(5, 2, 2)])
        with pytest.raises(ValueError, match='tile 3 is already done'):
            s.add_tile(3, [_record(997, 1, 1)])
        assert len(s) == 400 and 7 not in s.done_tiles()
        assert s.query(0, 0, 3, 3) == [r for r in recs
                                       if r.x < 3 and r.y < 3]
        s.add_tile(7, [_record(998, 1, 1)])
        assert s.max_id() == 998 and 7 in s.done_tiles()


def test_meta_and_bad_files(tmp_path, filled):
    path, _ = filled
    with NucleusStore(path, 'a') as s:
        s.set_meta('params', {'tile': 1024, 'mpp': [0.25, 0.5]})
        with pytest.raises(ValueError, match='reserved'):
            s.set_meta('format', 'x')
    with NucleusStore(path) as s:
        assert s.get_meta('params') == {'tile': 1024, 'mpp': [0.25, 0.5]}
        assert s.get_meta('absent', 3) == 3
    with NucleusStore(path, 'w') as s:
        assert len(s) == 0 and s.done_tiles() == set()
    with pytest.raises(FileNotFoundError, match='none.db'):
        NucleusStore(str(tmp_path / 'none.db'))
    junk = tmp_path / 'junk.db'
    junk.write_bytes(b'not sqlite' * 100)
    with pytest.raises(ValueError, match='junk.db'):
        NucleusStore(str(junk), 'a')
    other = str(tmp_path / 'other.db')
    sqlite3.connect(other).execute('CREATE TABLE meta (key, value)').close()
    with pytest.raises(ValueError, match='other.db.*format'):
        NucleusStore(other)


_WRITER = r'''
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location('store', sys.argv[1])
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
s = m.NucleusStore(sys.argv[2], 'a')
ang = np.linspace(0, 2 * np.pi, 7)[:-1]
poly = np.stack([np.cos(ang), np.sin(ang)], 1)
t = 0
while True:
    recs = [m.NucleusRecord(id=t * 500 + i + 1, x=float(i), y=float(t),
                            box=(0, 0, 1, 1), label=0, class_name='a',
                            score=1.0, polygon=poly + (i, t), point=(i, t),
                            measurements={'v': float(i)})
            for i in range(500)]
    s.add_tile(t, recs)
    print(t, flush=True)
    t += 1
'''


def test_sigkill_leaves_whole_tiles(tmp_path):
    path = str(tmp_path / 'journal.db')
    proc = subprocess.Popen([sys.executable, '-c', _WRITER, STORE_PY, path],
                            stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(6):  # let it commit a few tiles, then kill mid-run
            assert proc.stdout.readline().strip()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with NucleusStore(path, 'a') as s:
        done = s.done_tiles()
        assert len(done) >= 6 and done == set(range(len(done)))
        assert len(s) == 500 * len(done)  # no half tile
        raw = s._db().execute(
            'SELECT tile, COUNT(*) FROM nuclei GROUP BY tile').fetchall()
        assert dict(raw) == {t: 500 for t in done}
        # The resumed run continues where it stopped.
        nxt = len(done)
        s.add_tile(nxt, [_record(nxt * 500 + 1, 1, 1)])
        assert s.max_id() == nxt * 500 + 1


def test_hot_journal_rolled_back(tmp_path):
    """A copy taken mid-transaction (what a power cut leaves): read-only
    opening says how to recover; 'a' rolls the transaction back."""
    import shutil
    src = str(tmp_path / 'live.db')
    NucleusStore(src, 'a').close()
    con = sqlite3.connect(src)
    con.execute('PRAGMA cache_size=1')  # spill: the journal gets written
    con.execute('BEGIN')
    for i in range(3000):
        con.execute('INSERT INTO meta VALUES (?, ?)', (str(i), '"' + 'x' *
                                                      200 + '"'))
    assert osp.exists(src + '-journal')
    dst = str(tmp_path / 'cut.db')
    shutil.copy(src, dst)
    shutil.copy(src + '-journal', dst + '-journal')
    con.close()
    with pytest.raises(ValueError, match='cut.db.*mode="a"'):
        NucleusStore(dst)
    with NucleusStore(dst, 'a') as s:
        assert s.get_meta('5') is None and len(s) == 0
    with NucleusStore(dst) as s:
        assert s.done_tiles() == set()
