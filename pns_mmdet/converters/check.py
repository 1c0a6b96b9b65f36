"""Load a converted dataset through the real test pipeline and summarise it.
"""
import json
import os.path as osp
from collections import Counter
from typing import Optional, Sequence

import numpy as np

__all__ = ['check_coco_dataset']


def check_coco_dataset(data_root: str,
                       ann_file: str,
                       classes: Optional[Sequence[str]] = None,
                       max_images: Optional[int] = None) -> dict:
    """Build :class:`NucleusDataset` + test pipeline and collect statistics.

    Every image is loaded, its masks decoded and its points derived, so any
    malformed annotation, missing image or size mismatch raises here.

    Args:
        data_root (str): dataset root (with ``images/``).
        ann_file (str): annotation JSON, relative to ``data_root``.
        classes (Sequence[str], optional): class names; default: the
            categories of the file, in id order.
        max_images (int, optional): check only the first N images.

    Returns:
        dict: ``images``, ``empty_images``, ``nuclei``, ``per_class``
        (name -> count), ``tissues`` (name -> images), ``area_min``,
        ``area_median``, ``area_max`` (pixels), ``points_inside`` (fraction
        of points lying on their own mask; 1.0 by construction).
    """
    from mmengine.registry import init_default_scope

    import pns_mmdet.datasets  # noqa: F401  (registers the datasets)
    init_default_scope('mmdet')
    from mmdet.registry import DATASETS
    if classes is None:
        with open(osp.join(data_root, ann_file)) as f:
            cats = json.load(f)['categories']
        classes = [c['name'] for c in sorted(cats, key=lambda c: c['id'])]
    ds = DATASETS.build(
        dict(type='NucleusDataset',
             data_root=data_root,
             ann_file=ann_file,
             data_prefix=dict(img='images/'),
             metainfo=dict(classes=tuple(classes)),
             test_mode=True,
             pipeline=[
                 dict(type='LoadImageFromFile'),
                 dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                 dict(type='NucleusPointsFromMasks'),
                 dict(type='PackNucleusInputs'),
             ]))
    n = len(ds) if max_images is None else min(len(ds), max_images)
    per_class: Counter = Counter()
    tissues: Counter = Counter()
    areas = []
    inside = total = empty = 0
    for i in range(n):
        sample = ds[i]['data_samples']
        gi = sample.gt_instances
        tissues[sample.metainfo.get('tissue')] += 1
        if len(gi) == 0:
            empty += 1
            continue
        masks = gi.masks.masks
        areas.extend(masks.reshape(len(masks), -1).sum(1).tolist())
        for lab in gi.labels.tolist():
            per_class[classes[lab]] += 1
        pts = np.floor(gi.points.numpy() + 0.5).astype(int)
        inside += int(masks[np.arange(len(masks)), pts[:, 1],
                            pts[:, 0]].astype(bool).sum())
        total += len(masks)
    return dict(images=n,
                empty_images=empty,
                nuclei=total,
                per_class=dict(per_class),
                tissues={
                    str(k): v
                    for k, v in tissues.items()
                },
                area_min=int(min(areas)) if areas else 0,
                area_median=float(np.median(areas)) if areas else 0.0,
                area_max=int(max(areas)) if areas else 0,
                points_inside=inside / total if total else 1.0)
