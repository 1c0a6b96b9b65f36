"""COCO-style JSON of predicted nucleus instances for a whole run.

The file is a complete COCO dataset dict (``images``, ``annotations`` with
compressed-RLE ``segmentation``, ``bbox``, ``area``, ``score``,
``categories``), so ``pycocotools.coco.COCO(path)`` opens it directly and
``coco_gt.loadRes(data['annotations'])`` uses it as detection results.
"""
import json
from typing import Dict, List, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from ..utils import atomic_write

__all__ = ['instance_map_to_rles', 'CocoResultsWriter']


def instance_map_to_rles(inst_map: np.ndarray) -> Dict[int, dict]:
    """Compressed COCO RLE of every instance of an instance map, in one pass.

    Runs are found once on the column-major (COCO order) flattened map and
    grouped by id, instead of encoding one full-size binary mask per
    instance.

    Args:
        inst_map (np.ndarray): (H, W) integer instance map, 0 = background.

    Returns:
        dict[int, dict]: id -> ``{'size': [H, W], 'counts': str}``, equal to
        ``pycocotools.mask.encode`` of ``inst_map == id``.
    """
    inst_map = np.asarray(inst_map)
    h, w = inst_map.shape
    flat = inst_map.T.ravel()
    if flat.size == 0:
        return {}
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [flat.size]])
    ids = flat[starts]
    fg = ids > 0
    starts, ends, ids = starts[fg], ends[fg], ids[fg]
    order = np.argsort(ids, kind='stable')  # keeps runs in pixel order
    starts, ends, ids = starts[order], ends[order], ids[order]
    bounds = np.flatnonzero(np.diff(ids)) + 1
    out = {}
    for s, e, i in zip(np.split(starts, bounds), np.split(ends, bounds),
                       ids[np.concatenate([[0], bounds])] if len(ids) else []):
        # Alternating background / foreground run lengths, starting with
        # background (COCO's convention), closing with the trailing zeros.
        counts = np.empty(2 * len(s) + 1, dtype=np.int64)
        counts[0] = s[0]
        counts[1:-1:2] = e - s
        counts[2:-1:2] = s[1:] - e[:-1]
        counts[-1] = flat.size - e[-1]
        if counts[-1] == 0:
            counts = counts[:-1]  # pycocotools omits an empty last run
        rle = mask_utils.frPyObjects({
            'size': [h, w],
            'counts': counts.tolist()
        }, h, w)
        rle['counts'] = rle['counts'].decode('ascii')
        out[int(i)] = rle
    return out


class CocoResultsWriter:
    """Collects the predictions of several images into one COCO JSON.

    Args:
        class_names (Sequence[str]): Category names; label ``c`` (0-based)
            becomes ``category_id = c + 1``.
    """

    def __init__(self, class_names: Sequence[str]) -> None:
        self.class_names = list(class_names)
        self.images: List[dict] = []
        self.annotations: List[dict] = []

    def add(self, file_name: str, inst_map: np.ndarray,
            labels: Sequence[int], scores: Sequence[float]) -> int:
        """Add one image's instances.

        Args:
            file_name (str): Image file name recorded in ``images``.
            inst_map (np.ndarray): (H, W) instance map; id ``i`` has class
                ``labels[i - 1]`` and score ``scores[i - 1]``.
            labels (Sequence[int]): (N,) 0-based class per instance id.
            scores (Sequence[float]): (N,) score per instance id.

        Returns:
            int: Number of annotations added (ids present in the map).
        """
        inst_map = np.asarray(inst_map)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        scores = np.asarray(scores, dtype=float).reshape(-1)
        image_id = len(self.images) + 1
        h, w = inst_map.shape
        self.images.append(
            dict(id=image_id, file_name=file_name, height=h, width=w))
        rles = instance_map_to_rles(inst_map)
        for inst_id, rle in rles.items():
            if inst_id > len(labels):
                raise ValueError(f'{file_name}: instance id {inst_id} has no '
                                 f'label (only {len(labels)} given)')
            x, y, bw, bh = mask_utils.toBbox(rle).tolist()
            self.annotations.append(
                dict(
                    id=len(self.annotations) + 1,
                    image_id=image_id,
                    category_id=int(labels[inst_id - 1]) + 1,
                    segmentation=rle,
                    area=int(mask_utils.area(rle)),
                    bbox=[x, y, bw, bh],
                    iscrowd=0,
                    score=float(scores[inst_id - 1]),
                    instance_id=inst_id))
        return len(rles)

    def to_dict(self) -> dict:
        """The COCO dataset dict."""
        return dict(
            images=self.images,
            annotations=self.annotations,
            categories=[
                dict(id=i + 1, name=n) for i, n in enumerate(self.class_names)
            ])

    def dump(self, path: str) -> None:
        """Write the JSON file (atomically: temporary name, then rename)."""
        with atomic_write(path, 'w') as f:
            json.dump(self.to_dict(), f)
