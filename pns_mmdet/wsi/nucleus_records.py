"""Engine output of a processing tile -> level-0 nucleus records."""
from typing import Sequence

import numpy as np
from scipy import ndimage
from skimage.draw import polygon2mask

from ..visualization.polygons import mask_to_geometry
from .grid import ProcessingTile
from .measurements import nucleus_measurements
from .store import NucleusRecord

__all__ = ['tile_records', 'one_region']


def tile_records(tile: ProcessingTile, rgb: np.ndarray, result, store,
                 s: float, next_id: int, dedup_radius: float,
                 model_mpp: float, class_names: Sequence[str]) -> list:
    """The nuclei a processing tile owns, as level-0 records.

    Args:
        tile (ProcessingTile): The tile (model frame).
        rgb (np.ndarray): (h, w, 3) its pixels at ``model_mpp``.
        result (NucleusResult): The engine's output on ``rgb``.
        store (NucleusStore): Nuclei stored so far (seam de-duplication).
        s (float): ``model_mpp / slide_mpp`` (model frame -> level 0).
        next_id (int): Id of the first new nucleus.
        dedup_radius (float): Model-frame px; a point this close to a
            stored one is the neighbour tile's nucleus.
        model_mpp (float): µm/px of ``rgb`` (physical measurements).
        class_names (Sequence[str]): Names of the labels.

    Returns:
        list[NucleusRecord]: Ids ``next_id, next_id + 1, ...``.
    """
    inst = np.asarray(result.inst_map)
    if len(result.labels) == 0:
        return []
    slices = ndimage.find_objects(inst)
    radius0 = dedup_radius * s
    records = []
    for k in range(len(result.labels)):
        px, py = (float(v) for v in result.points[k])
        gx, gy = tile.x + px, tile.y + py
        if not tile.owns(gx, gy) or k >= len(slices) or \
                slices[k] is None:
            continue
        # Points: pixel-index convention -> pixel-square frame.
        point = ((gx + 0.5) * s, (gy + 0.5) * s)
        if store.near(point[0], point[1], radius0):
            continue  # the neighbour tile already stored this nucleus
        sy, sx = slices[k]
        mask, ring = one_region(inst[sy, sx] == k + 1)
        if ring is None:
            continue
        ys, xs = np.nonzero(mask)
        ox, oy = tile.x + sx.start, tile.y + sy.start
        ring = ring + (ox, oy)
        label = int(result.labels[k])
        meas = nucleus_measurements(mask, rgb[sy, sx], model_mpp)
        records.append(
            NucleusRecord(
                id=next_id + len(records),
                x=(ox + xs.mean() + 0.5) * s,
                y=(oy + ys.mean() + 0.5) * s,
                box=((ox + xs.min()) * s, (oy + ys.min()) * s,
                     (ox + xs.max() + 1) * s, (oy + ys.max() + 1) * s),
                label=label,
                class_name=str(class_names[label]),
                score=float(result.scores[k]),
                polygon=ring * s,
                point=point,
                measurements={k2: float(v)
                              for k2, v in meas.items()}))
    return records

def one_region(mask: np.ndarray):
    """One simple polygon per nucleus, and the mask it covers.

    The largest 4-connected part with its holes filled; should its
    pixel-edge outline still be several polygons or have a hole (parts
    touching at a corner), the outer ring of the largest polygon is
    kept and the mask rasterised back from it. So the polygon, the box
    and the measurements always describe the same pixels.

    Returns:
        tuple[np.ndarray, np.ndarray | None]: The (h, w) bool mask and
        its ring (K, 2) x, y in the mask's pixel-edge frame (None when
        empty).
    """
    lab, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(lab.ravel())[1:]
        mask = lab == (int(np.argmax(sizes)) + 1)
    mask = ndimage.binary_fill_holes(mask)
    if not mask.any():
        return mask, None
    geom = mask_to_geometry(mask)
    simple = geom.geom_type == 'Polygon' and not geom.interiors
    if geom.geom_type == 'MultiPolygon':
        geom = max(geom.geoms, key=lambda g: g.area)
    ring = np.asarray(geom.exterior.coords, dtype=np.float64)[:-1]
    if not simple:
        # Vertices lie on pixel edges: pixel centres decide exactly.
        mask = polygon2mask(mask.shape, ring[:, ::-1] - 0.5)
    return mask, ring
