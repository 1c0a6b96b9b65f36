"""Nucleus instances as a GeoJSON FeatureCollection that QuPath imports.

QuPath (>= 0.4, *File > Import objects from file*) reads each Feature's
``properties.objectType`` ("detection" here, so that tens of thousands of
nuclei stay light), ``classification`` ``{"name", "color": [r, g, b]}`` and
``measurements`` (a name -> number map). Geometries are in image pixels
(x right, y down, pixel (x, y) = square ``[x, x+1] x [y, y+1]``), exactly
the instance's visible pixels of the instance map.
"""
import json
import uuid
from typing import Dict, Optional, Sequence

import numpy as np
import shapely

from ..utils import atomic_write
from .polygons import instance_geometries

__all__ = ['instances_to_geojson', 'save_geojson', 'detection_feature']

# Fixed namespace so that re-running on the same image gives the same ids.
_UUID_NAMESPACE = uuid.UUID('3f1e4a52-6f0c-4b8e-9d55-2a7c1b9e0d11')


def instances_to_geojson(inst_map: np.ndarray,
                         labels: Sequence[int],
                         scores: Sequence[float],
                         class_names: Sequence[str],
                         palette: Sequence[Sequence[int]],
                         image_name: str = '',
                         extra_measurements: Optional[Dict[str,
                                                           Sequence[float]]]
                         = None) -> dict:
    """Build a QuPath-compatible FeatureCollection of nucleus detections.

    Instance id ``i`` of ``inst_map`` is described by ``labels[i - 1]`` and
    ``scores[i - 1]``; ids absent from the map (fully hidden instances) get
    no feature, so features and map ids correspond one to one.

    Args:
        inst_map (np.ndarray): (H, W) integer instance map, 0 = background.
        labels (Sequence[int]): (N,) class index (0-based) per instance id.
        scores (Sequence[float]): (N,) score per instance id (the segmentor's
            predicted IoU).
        class_names (Sequence[str]): Class names indexed by label.
        palette (Sequence[Sequence[int]]): RGB colour per class.
        image_name (str): Image identifier mixed into the feature UUIDs.
        extra_measurements (dict[str, Sequence[float]], optional): More
            per-instance numbers (indexed like ``labels``) to export.

    Returns:
        dict: ``{"type": "FeatureCollection", "features": [...]}`` with one
        feature per present id, in increasing id order; each feature's
        ``measurements`` holds "Instance ID", "Score" and "Area px".
    """
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, dtype=float).reshape(-1)
    if len(labels) != len(scores):
        raise ValueError(f'instances_to_geojson: {len(labels)} labels but '
                         f'{len(scores)} scores')
    if len(labels) and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise ValueError(f'instances_to_geojson: labels must lie in [0, '
                         f'{len(class_names)}) for classes {class_names}, '
                         f'got range [{labels.min()}, {labels.max()}]')
    inst_map = np.asarray(inst_map)
    if inst_map.size and inst_map.max() > len(labels):
        raise ValueError(f'instances_to_geojson: the instance map has id '
                         f'{int(inst_map.max())} but only {len(labels)} '
                         'labels/scores were given')
    extra = extra_measurements or {}
    areas = np.bincount(inst_map.ravel().astype(np.int64),
                        minlength=len(labels) + 1)
    features = []
    for inst_id, geom in instance_geometries(inst_map).items():
        k = inst_id - 1
        label = int(labels[k])
        measurements = {
            'Instance ID': inst_id,
            'Score': round(float(scores[k]), 6),
            'Area px': int(areas[inst_id]),
        }
        for name, values in extra.items():
            measurements[name] = float(values[k])
        features.append(
            detection_feature(shapely.geometry.mapping(geom),
                              class_names[label], palette[label],
                              measurements, f'{image_name}/{inst_id}'))
    return {'type': 'FeatureCollection', 'features': features}


def detection_feature(geometry: dict, class_name: str,
                      color: Sequence[int], measurements: dict,
                      uid_key: str) -> dict:
    """One QuPath detection Feature (also used by the slide writers).

    Args:
        geometry (dict): GeoJSON geometry mapping (image/slide pixels).
        class_name (str): Classification name.
        color (Sequence[int]): Classification RGB colour.
        measurements (dict): Name -> number.
        uid_key (str): Stable key (e.g. ``'image/id'``) hashed into the
            feature's UUID, so re-runs give the same ids.

    Returns:
        dict: The Feature.
    """
    return {
        'type': 'Feature',
        'id': str(uuid.uuid5(_UUID_NAMESPACE, uid_key)),
        'geometry': geometry,
        'properties': {
            'objectType': 'detection',
            'classification': {
                'name': str(class_name),
                'color': [int(c) for c in color],
            },
            'measurements': measurements,
        },
    }


def save_geojson(collection: dict, path: str) -> None:
    """Write a FeatureCollection (integer pixel coordinates stay compact)."""
    with atomic_write(path, 'w') as f:  # never a truncated file
        json.dump(collection, f, default=_to_builtin)


def _to_builtin(obj):
    # shapely.mapping returns tuples of floats; numpy scalars can sneak in.
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f'cannot serialise {type(obj)} to JSON')
