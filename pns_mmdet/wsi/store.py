"""On-disk nucleus store: SQLite with an R*-tree, and the resume journal.

One row per nucleus (id, centroid, box, class, score, polygon area, prompt
point, polygon as WKB, measurements as JSON), two R*-tree indexes (on the
centroid, for region queries, and on the prompt point, for the seam
de-duplication of neighbouring processing tiles) and one row per finished
processing tile. :meth:`NucleusStore.add_tile` writes a tile's nuclei and
its "done" row in one transaction with ``synchronous=FULL``, so after a
SIGKILL or a power loss the store holds every finished tile completely and
no part of an unfinished one: a restarted run redoes exactly the tiles
:meth:`NucleusStore.done_tiles` lacks.

Coordinates are in the level-0 frame (slide pixels at pyramid level 0,
pixel column x covering ``[x, x + 1)``). The file is plain SQLite: any tool
reads it (``SELECT * FROM nuclei``; polygons with shapely.from_wkb or
SpatiaLite's GeomFromWKB).
"""
import json
import math
import os
import os.path as osp
import sqlite3
from dataclasses import dataclass, field
from typing import (Any, Dict, Iterator, List, Optional, Sequence, Set,
                    Tuple)

import numpy as np
import shapely

__all__ = ['NucleusRecord', 'NucleusStore', 'STORE_FORMAT']

#: Written in the store's meta table; bumped on schema changes.
STORE_FORMAT = 'pns_mmdet.nuclei/1'

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tiles (
    tile INTEGER PRIMARY KEY, nuclei INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS nuclei (
    id INTEGER PRIMARY KEY, tile INTEGER NOT NULL,
    x REAL NOT NULL, y REAL NOT NULL,
    x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,
    label INTEGER NOT NULL, class_name TEXT NOT NULL, score REAL NOT NULL,
    area REAL NOT NULL, point_x REAL NOT NULL, point_y REAL NOT NULL,
    polygon BLOB NOT NULL, measurements TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS nuclei_centroid
    USING rtree(id, minx, maxx, miny, maxy);
CREATE VIRTUAL TABLE IF NOT EXISTS nuclei_point
    USING rtree(id, minx, maxx, miny, maxy);
"""
_COLUMNS = ('id, x, y, x0, y0, x1, y1, label, class_name, score, point_x, '
            'point_y, polygon, measurements')
_BATCH = 4096  # rows fetched at a time when streaming


@dataclass(eq=False)
class NucleusRecord:
    """One nucleus, level-0 frame.

    Attributes:
        id (int): Unique id (>= 1) within the slide.
        x (float): Centroid x (mean of the pixel centres), level-0 px.
        y (float): Centroid y.
        box (tuple): (x0, y0, x1, y1) of the pixel squares, level-0 px.
        label (int): Class index (0-based) of the model's classes.
        class_name (str): Class name.
        score (float): Segmentor score (predicted IoU).
        polygon (np.ndarray): (K, 2) float64 outline (x, y), level-0 px,
            K >= 3, the closing vertex not repeated.
        point (tuple): (x, y) prompt point, level-0 px.
        measurements (dict[str, float]): Morphology and stain
            (:func:`~pns_mmdet.wsi.measurements.nucleus_measurements`).
    """
    id: int
    x: float
    y: float
    box: Tuple[float, float, float, float]
    label: int
    class_name: str
    score: float
    polygon: np.ndarray
    point: Tuple[float, float]
    measurements: Dict[str, float] = field(default_factory=dict)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, NucleusRecord):
            return NotImplemented
        return (self.id == other.id and self.x == other.x
                and self.y == other.y
                and tuple(self.box) == tuple(other.box)
                and self.label == other.label
                and self.class_name == other.class_name
                and self.score == other.score
                and tuple(self.point) == tuple(other.point)
                and self.measurements == other.measurements
                and np.array_equal(self.polygon, other.polygon))

    @property
    def area(self) -> float:
        """Polygon area (shoelace), level-0 px²."""
        return float(abs(_signed_area(self.polygon)))

    def geometry(self) -> shapely.Polygon:
        """The outline as a shapely Polygon (level-0 px)."""
        return shapely.Polygon(np.asarray(self.polygon, dtype=np.float64))


def _signed_area(polygon: np.ndarray) -> float:
    """Shoelace area of an open ring (K, 2); > 0 when counter-clockwise in
    x-right / y-up axes."""
    p = np.asarray(polygon, dtype=np.float64)
    x, y = p[:, 0], p[:, 1]
    return float((x[:-1] @ y[1:] - y[:-1] @ x[1:] + x[-1] * y[0] -
                  y[-1] * x[0]) / 2)


def _check_record(rec: NucleusRecord) -> None:
    poly = np.asarray(rec.polygon, dtype=np.float64)
    values = [rec.x, rec.y, *rec.box, rec.score, *rec.point]
    problem = None
    if not isinstance(rec.id, (int, np.integer)) or rec.id < 1:
        problem = f'id must be an integer >= 1, got {rec.id!r}'
    elif poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
        problem = f'polygon must be (K >= 3, 2), got shape {poly.shape}'
    elif not np.isfinite(poly).all() or not all(
            math.isfinite(float(v)) for v in values):
        problem = 'coordinates and score must be finite'
    elif not (rec.box[0] <= rec.box[2] and rec.box[1] <= rec.box[3]):
        problem = f'box must be (x0, y0, x1, y1) with x0 <= x1, y0 <= y1, ' \
            f'got {tuple(rec.box)}'
    if problem:
        raise ValueError(f'NucleusRecord {rec.id!r}: {problem}')


class NucleusStore:
    """Nuclei of one slide in an SQLite file with R*-tree indexes.

    Args:
        path (str): The ``.db`` file.
        mode (str): ``'r'`` read only (the file must exist), ``'a'`` read
            and append (created if missing), ``'w'`` a new empty store
            (an existing file is replaced).

    Raises:
        FileNotFoundError: ``mode='r'`` and no such file.
        ValueError: The file is not a nucleus store (names the file).
    """

    def __init__(self, path: str, mode: str = 'r'):
        if mode not in ('r', 'a', 'w'):
            raise ValueError(f'NucleusStore: mode must be "r", "a" or "w", '
                             f'got {mode!r}')
        self.path = os.fspath(path)
        self.mode = mode
        if mode == 'r' and not osp.isfile(self.path):
            raise FileNotFoundError(f'nucleus store {self.path}: no such '
                                    'file')
        if mode == 'w':
            for suffix in ('', '-journal', '-wal', '-shm'):
                if osp.exists(self.path + suffix):
                    os.unlink(self.path + suffix)
        try:
            if mode == 'r':
                uri = 'file:' + osp.abspath(self.path) + '?mode=ro'
                self._con = sqlite3.connect(uri, uri=True)
            else:
                self._con = sqlite3.connect(self.path)
            self._con.execute('PRAGMA synchronous=FULL')
            if mode != 'r':
                with self._con:
                    self._con.executescript(_SCHEMA)
                    self._con.execute(
                        'INSERT OR IGNORE INTO meta VALUES (?, ?)',
                        ('format', json.dumps(STORE_FORMAT)))
            fmt = self._con.execute(
                'SELECT value FROM meta WHERE key = ?',
                ('format', )).fetchone()
        except sqlite3.DatabaseError as err:
            hint = ''
            if mode == 'r' and osp.exists(self.path + '-journal'):
                hint = ('; it has an unfinished transaction (a killed run): '
                        'open it once with mode="a" to roll that back')
            raise ValueError(f'nucleus store {self.path}: not a readable '
                             f'SQLite nucleus store ({err}){hint}') from err
        if fmt is None or json.loads(fmt[0]) != STORE_FORMAT:
            self._con.close()
            raise ValueError(
                f'nucleus store {self.path}: format '
                f'{json.loads(fmt[0]) if fmt else None!r}, expected '
                f'{STORE_FORMAT!r}')

    # -- life cycle ---------------------------------------------------------
    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> 'NucleusStore':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _db(self) -> sqlite3.Connection:
        if self._con is None:
            raise ValueError(f'nucleus store {self.path} is closed')
        return self._con

    # -- writing ------------------------------------------------------------
    def add_tile(self, tile_index: int,
                 records: Sequence[NucleusRecord]) -> None:
        """Store a processing tile's nuclei and mark the tile done, as one
        transaction (all or nothing, durable when this returns).

        Args:
            tile_index (int): The processing tile's index.
            records (Sequence[NucleusRecord]): Its nuclei (may be empty);
                ids must be new.

        Raises:
            ValueError: Read-only store, tile already done, duplicate id
                or an invalid record; nothing is written then.
        """
        if self.mode == 'r':
            raise ValueError(f'nucleus store {self.path} is read only')
        rows, cents, points = [], [], []
        for rec in records:
            _check_record(rec)
            poly = np.asarray(rec.polygon, dtype=np.float64)
            rid, x, y = int(rec.id), float(rec.x), float(rec.y)
            px, py = float(rec.point[0]), float(rec.point[1])
            rows.append((rid, int(tile_index), x, y,
                         *(float(v) for v in rec.box), int(rec.label),
                         str(rec.class_name), float(rec.score),
                         rec.area, px, py,
                         shapely.to_wkb(shapely.Polygon(poly)),
                         json.dumps({str(k): float(v) for k, v in
                                     rec.measurements.items()})))
            cents.append((rid, x, x, y, y))
            points.append((rid, px, px, py, py))
        db = self._db()
        try:
            with db:  # one transaction: commit, or roll back on error
                db.execute('INSERT INTO tiles VALUES (?, ?)',
                           (int(tile_index), len(rows)))
                db.executemany(
                    'INSERT INTO nuclei VALUES '
                    '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)', rows)
                db.executemany('INSERT INTO nuclei_centroid VALUES '
                               '(?, ?, ?, ?, ?)', cents)
                db.executemany('INSERT INTO nuclei_point VALUES '
                               '(?, ?, ?, ?, ?)', points)
        except sqlite3.IntegrityError as err:
            done = db.execute('SELECT 1 FROM tiles WHERE tile = ?',
                              (int(tile_index), )).fetchone()
            what = (f'tile {tile_index} is already done' if done else
                    f'a nucleus id of tile {tile_index} is already stored '
                    f'or repeated')
            raise ValueError(f'nucleus store {self.path}: {what} '
                             f'({err})') from err

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``key`` (committed)."""
        if self.mode == 'r':
            raise ValueError(f'nucleus store {self.path} is read only')
        if key == 'format':
            raise ValueError('NucleusStore: "format" is reserved')
        with self._db() as db:
            db.execute('INSERT OR REPLACE INTO meta VALUES (?, ?)',
                       (str(key), json.dumps(value)))

    # -- reading ------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._db().execute('SELECT value FROM meta WHERE key = ?',
                                 (str(key), )).fetchone()
        return default if row is None else json.loads(row[0])

    def done_tiles(self) -> Set[int]:
        """Indices of the processing tiles already stored."""
        return {r[0] for r in self._db().execute('SELECT tile FROM tiles')}

    def __len__(self) -> int:
        return int(self._db().execute(
            'SELECT COUNT(*) FROM nuclei').fetchone()[0])

    def max_id(self) -> int:
        """Largest nucleus id stored (0 when empty)."""
        row = self._db().execute('SELECT MAX(id) FROM nuclei').fetchone()
        return int(row[0] or 0)

    @staticmethod
    def _record(row: tuple) -> NucleusRecord:
        (rid, x, y, x0, y0, x1, y1, label, name, score, px, py, wkb,
         meas) = row
        ring = shapely.get_coordinates(
            shapely.get_exterior_ring(shapely.from_wkb(wkb)))[:-1]
        return NucleusRecord(id=rid, x=x, y=y, box=(x0, y0, x1, y1),
                             label=label, class_name=name, score=score,
                             polygon=ring, point=(px, py),
                             measurements=json.loads(meas))

    def _select(self, where: str = '', params: tuple = ()) -> List[
            NucleusRecord]:
        sql = f'SELECT {_COLUMNS} FROM nuclei {where} ORDER BY id'
        return [self._record(r) for r in self._db().execute(sql, params)]

    def query(self, x0: float, y0: float, x1: float,
              y1: float) -> List[NucleusRecord]:
        """Nuclei whose centroid lies in ``[x0, x1) x [y0, y1)`` (level 0).

        Half-open, so the queries of a grid of regions partition the
        nuclei. The R*-tree (32-bit, rounded outwards) narrows the search;
        the stored 64-bit centroids decide.

        Returns:
            list[NucleusRecord]: Ordered by id.
        """
        return self._select(
            'WHERE id IN (SELECT id FROM nuclei_centroid WHERE maxx >= ? '
            'AND minx <= ? AND maxy >= ? AND miny <= ?) AND x >= ? AND '
            'x < ? AND y >= ? AND y < ?',
            (x0, x1, y0, y1, x0, x1, y0, y1))

    def near(self, x: float, y: float, radius: float,
             by: str = 'point') -> List[NucleusRecord]:
        """Nuclei whose prompt point (or centroid) is within ``radius``.

        The runner's seam de-duplication asks this with a new nucleus'
        prompt point: a stored nucleus this close is the same nucleus seen
        by the neighbouring processing tile.

        Args:
            x (float): Level-0 x.
            y (float): Level-0 y.
            radius (float): Distance, level-0 px (inclusive).
            by (str): ``'point'`` (prompt points) or ``'centroid'``.

        Returns:
            list[NucleusRecord]: Nearest first (ties by id).
        """
        if by not in ('point', 'centroid'):
            raise ValueError(f'near: by must be "point" or "centroid", got '
                             f'{by!r}')
        index, cx, cy = (('nuclei_point', 'point_x', 'point_y')
                         if by == 'point' else ('nuclei_centroid', 'x', 'y'))
        recs = self._select(
            f'WHERE id IN (SELECT id FROM {index} WHERE maxx >= ? AND '
            f'minx <= ? AND maxy >= ? AND miny <= ?) AND '
            f'(({cx} - ?) * ({cx} - ?) + ({cy} - ?) * ({cy} - ?)) <= ?',
            (x - radius, x + radius, y - radius, y + radius, x, x, y, y,
             radius * radius))
        key = (lambda r: (r.point[0] - x)**2 + (r.point[1] - y)**2) \
            if by == 'point' else (lambda r: (r.x - x)**2 + (r.y - y)**2)
        return sorted(recs, key=lambda r: (key(r), r.id))

    def iter_records(self,
                     batch: Optional[int] = None) -> Iterator[NucleusRecord]:
        """All nuclei ordered by id, streamed (``batch`` rows at a time).

        Uses its own cursor, so the store stays usable meanwhile; memory
        holds one batch, not the slide.
        """
        cur = self._db().execute(
            f'SELECT {_COLUMNS} FROM nuclei ORDER BY id')
        try:
            while True:
                rows = cur.fetchmany(batch or _BATCH)
                if not rows:
                    return
                for r in rows:
                    yield self._record(r)
        finally:
            cur.close()

    def __iter__(self) -> Iterator[NucleusRecord]:
        return self.iter_records()

    def __repr__(self) -> str:
        state = 'closed' if self._con is None else f'{len(self)} nuclei'
        return f'NucleusStore({self.path!r}, mode={self.mode!r}, {state})'
