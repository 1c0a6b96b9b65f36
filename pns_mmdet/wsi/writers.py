"""Streamed, atomic slide outputs: QuPath GeoJSON (optionally gzipped), CSV.

Both writers consume an iterable of
:class:`~pns_mmdet.wsi.store.NucleusRecord` (typically
``NucleusStore.iter_records()``) one record at a time, so memory does not
grow with the number of nuclei, and write under a temporary name that is
renamed into place only when complete (:func:`pns_mmdet.utils.atomic_write`):
a killed run never leaves a truncated ``nuclei.geojson``.

The GeoJSON is a real ``FeatureCollection`` (not a bare list, a peer's
common mistake) of QuPath ``detection`` objects built by
:func:`pns_mmdet.visualization.geojson.detection_feature`; coordinates are
level-0 slide pixels, which is what QuPath's *Import objects* expects.
"""
import csv
import gzip
import io
import json
import math
from typing import Iterable, List, Optional, Sequence

import numpy as np
import shapely

from ..utils import atomic_write
from ..visualization.geojson import detection_feature
from .measurements import MEASUREMENT_KEYS
from .store import NucleusRecord, _signed_area

__all__ = ['write_geojson', 'write_csv', 'CSV_COLUMNS']

#: Fixed leading CSV columns; measurement columns follow.
CSV_COLUMNS = ('id', 'x', 'y', 'x0', 'y0', 'x1', 'y1', 'point_x', 'point_y',
               'label', 'class_name', 'score')


def _geometry(rec: NucleusRecord, precision: Optional[int]) -> dict:
    """The record's outline as a valid GeoJSON geometry mapping."""
    ring = np.asarray(rec.polygon, dtype=np.float64)
    if precision is not None:
        ring = np.round(ring, precision)
    geom = shapely.Polygon(ring)
    if geom.is_valid:
        # Counter-clockwise exterior (as shapely's orient(geom, 1.0)),
        # written straight from the array: 4x faster than mapping().
        if _signed_area(ring) < 0:
            ring = ring[::-1]
        coords = ring.tolist()
        coords.append(coords[0])
        return {'type': 'Polygon', 'coordinates': [coords]}
    return shapely.geometry.mapping(_repaired(geom, rec))


def _repaired(geom, rec: NucleusRecord):
    """Polygonal parts of an invalid outline (a ring touching or crossing
    itself, e.g. a nucleus pinched to one pixel corner), as QuPath would
    keep them after repair; the box when nothing polygonal is left."""
    fixed = shapely.make_valid(geom)
    parts = [
        shapely.geometry.polygon.orient(p, 1.0)
        for g in getattr(fixed, 'geoms', [fixed])
        for p in getattr(g, 'geoms', [g])
        if isinstance(p, shapely.Polygon) and not p.is_empty
    ]
    if len(parts) == 1:
        return parts[0]
    if parts:
        return shapely.MultiPolygon(parts)
    x0, y0, x1, y1 = rec.box
    if x1 > x0 and y1 > y0:
        return shapely.box(x0, y0, x1, y1)
    raise ValueError(f'nucleus {rec.id}: degenerate polygon and box '
                     f'{tuple(rec.box)}')


def _open_text(raw, gz: bool):
    binary = gzip.GzipFile(fileobj=raw, mode='wb', mtime=0,
                           filename='') if gz else raw
    return binary, io.TextIOWrapper(binary, encoding='utf-8', newline='\n')


def _close_text(binary, text, gz: bool) -> None:
    text.flush()
    text.detach()  # leave the file itself to atomic_write
    if gz:
        binary.close()  # writes the gzip trailer, keeps ``raw`` open


def write_geojson(records: Iterable[NucleusRecord],
                  path: str,
                  class_names: Sequence[str],
                  palette: Sequence[Sequence[int]],
                  gz: Optional[bool] = None,
                  image_name: str = '',
                  precision: Optional[int] = 3) -> int:
    """Write nuclei as a QuPath-importable GeoJSON FeatureCollection.

    Args:
        records (Iterable[NucleusRecord]): Nuclei, level-0 frame; consumed
            once, one at a time.
        path (str): Output file (its folder must exist).
        class_names (Sequence[str]): Classification name per label.
        palette (Sequence[Sequence[int]]): RGB colour per label.
        gz (bool, optional): Gzip the file; by default when ``path`` ends
            with ``.gz``.
        image_name (str): Mixed into the feature UUIDs (stable per
            slide and nucleus id).
        precision (int, optional): Decimals kept of the coordinates
            (level-0 px); None keeps full precision. Defaults to 3.

    Returns:
        int: Number of features written. Each feature's ``measurements``
        hold ``Nucleus ID`` (the store/CSV id), ``Score`` and the record's
        finite measurements (NaN is not valid JSON and is left out). An
        invalid outline is repaired (:func:`shapely.make_valid`), so every
        geometry is valid.

    Raises:
        ValueError: A label outside ``class_names``/``palette``; the
            target is left untouched.
    """
    gz = str(path).endswith('.gz') if gz is None else bool(gz)
    n_classes = min(len(class_names), len(palette))
    count = 0
    with atomic_write(path, 'wb') as raw:
        binary, f = _open_text(raw, gz)
        f.write('{"type":"FeatureCollection","features":[')
        for rec in records:
            if not 0 <= rec.label < n_classes:
                raise ValueError(
                    f'write_geojson: nucleus {rec.id} has label '
                    f'{rec.label}, outside the {n_classes} classes '
                    f'{list(class_names)[:n_classes]}')
            meas = {'Nucleus ID': int(rec.id),
                    'Score': round(float(rec.score), 6)}
            meas.update((k, float(v)) for k, v in rec.measurements.items()
                        if math.isfinite(float(v)))
            feature = detection_feature(
                _geometry(rec, precision), class_names[rec.label],
                palette[rec.label], meas, f'{image_name}/{int(rec.id)}')
            f.write(',\n' if count else '\n')
            f.write(json.dumps(feature, allow_nan=False,
                               separators=(',', ':')))
            count += 1
        f.write('\n]}\n')
        _close_text(binary, f, gz)
    return count


def write_csv(records: Iterable[NucleusRecord],
              path: str,
              measurement_keys: Optional[Sequence[str]] = None) -> int:
    """Write one CSV row per nucleus (streamed, atomic).

    Columns: :data:`CSV_COLUMNS` (centroid, box and prompt point in level-0
    px, class, score), then the measurement columns: ``measurement_keys``,
    by default :data:`~pns_mmdet.wsi.measurements.MEASUREMENT_KEYS` plus
    any other keys of the first record (sorted). A record lacking a key
    leaves its cell empty.

    Returns:
        int: Number of rows written (without the header).

    Raises:
        ValueError: A record has a measurement with no column (it would be
            lost silently); the target is left untouched.
    """
    records = iter(records)
    first = next(records, None)
    if measurement_keys is None:
        keys: List[str] = list(MEASUREMENT_KEYS)
        if first is not None:
            keys += sorted(k for k in first.measurements if k not in keys)
    else:
        keys = list(measurement_keys)
    known = set(keys)
    count = 0
    with atomic_write(path, 'w', newline='', encoding='utf-8') as f:
        writer = csv.writer(f)
        writer.writerow(list(CSV_COLUMNS) + keys)
        rec = first
        while rec is not None:
            extra = set(rec.measurements) - known
            if extra:
                raise ValueError(f'write_csv: nucleus {rec.id} has '
                                 f'measurements {sorted(extra)} without a '
                                 f'column (columns: {keys})')
            x0, y0, x1, y1 = rec.box
            writer.writerow([
                int(rec.id), float(rec.x), float(rec.y), float(x0),
                float(y0), float(x1), float(y1), float(rec.point[0]),
                float(rec.point[1]), int(rec.label), rec.class_name,
                float(rec.score)
            ] + [
                float(rec.measurements[k]) if k in rec.measurements else ''
                for k in keys
            ])
            count += 1
            rec = next(records, None)
    return count
