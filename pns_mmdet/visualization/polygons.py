"""Exact polygons of the instances of an instance map.

A pixel (column x, row y) is the unit square ``[x, x + 1] x [y, y + 1]`` in
these polygons (QuPath's and GeoJSON-in-pixels convention), so rasterising a
polygon back gives exactly the instance's pixels: the outline follows pixel
edges, with holes and several parts when the (visible) instance has them.
"""
from typing import Dict, Optional, Sequence

import numpy as np
import shapely
from scipy import ndimage
from shapely.geometry.base import BaseGeometry

__all__ = ['mask_to_geometry', 'instance_geometries']


def mask_to_geometry(mask: np.ndarray,
                     offset: Sequence[int] = (0, 0)) -> BaseGeometry:
    """Union of the pixel squares of a binary mask.

    The mask is split into horizontal runs of pixels, each run becomes one
    rectangle and GEOS unions them, so the cost follows the number of runs
    (a few per row of a nucleus), not of pixels.

    Args:
        mask (np.ndarray): (h, w) bool mask (usually an instance's box).
        offset (Sequence[int]): (x, y) of the mask's top-left pixel in the
            output frame (image pixels).

    Returns:
        BaseGeometry: A valid ``Polygon`` or ``MultiPolygon`` (empty
        ``Polygon`` for an empty mask), vertices only at direction changes.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f'mask_to_geometry: mask must be 2-D, got shape '
                         f'{mask.shape}')
    if not mask.any():
        return shapely.Polygon()
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    change = np.diff(padded, axis=1)  # +1 at run starts, -1 after run ends
    rows_s, starts = np.nonzero(change == 1)
    rows_e, ends = np.nonzero(change == -1)
    # np.nonzero is row-major, so starts and ends pair up in order.
    assert np.array_equal(rows_s, rows_e)
    x0, y0 = offset
    boxes = shapely.box(starts + x0, rows_s + y0, ends + x0, rows_s + y0 + 1)
    geom = shapely.union_all(boxes)
    # The union keeps the run corners that lie on straight edges; tolerance
    # 0 removes only those collinear vertices, so the shape is unchanged.
    geom = shapely.simplify(geom, 0.0)
    return shapely.geometry.polygon.orient(geom, 1.0) if isinstance(
        geom, shapely.Polygon) else _orient_multi(geom)


def _orient_multi(geom: BaseGeometry) -> BaseGeometry:
    if isinstance(geom, shapely.MultiPolygon):
        return shapely.MultiPolygon([
            shapely.geometry.polygon.orient(p, 1.0) for p in geom.geoms])
    return geom


def instance_geometries(
        inst_map: np.ndarray,
        ids: Optional[Sequence[int]] = None) -> Dict[int, BaseGeometry]:
    """Exact outline of every instance of an instance map.

    Args:
        inst_map (np.ndarray): (H, W) integer instance map, 0 = background.
        ids (Sequence[int], optional): Ids to outline; all present ids by
            default. Ids absent from the map are skipped.

    Returns:
        dict[int, BaseGeometry]: id -> ``Polygon``/``MultiPolygon`` in image
        pixels (x right, y down), valid, in increasing id order.
    """
    inst_map = np.asarray(inst_map)
    if inst_map.ndim != 2:
        raise ValueError(f'instance_geometries: inst_map must be 2-D, got '
                         f'shape {inst_map.shape}')
    if inst_map.size == 0 or inst_map.max() <= 0:
        return {}
    # find_objects gives every id's bounding slices in one pass.
    slices = ndimage.find_objects(inst_map.astype(np.int64, copy=False))
    wanted = range(1, len(slices) + 1) if ids is None else sorted(ids)
    out = {}
    for i in wanted:
        if i < 1 or i > len(slices) or slices[i - 1] is None:
            continue
        sy, sx = slices[i - 1]
        patch = inst_map[sy, sx] == i
        out[int(i)] = mask_to_geometry(patch, (sx.start, sy.start))
    return out
