"""Tests for NucleusDataset (loading, validation, pipeline output)."""
import copy
import json
import os
import os.path as osp
import shutil

import numpy as np
import pytest
from mmengine.registry import init_default_scope

from pns_mmdet.datasets import NUCLEUS_METAINFO, NucleusDataset
from pns_mmdet.datasets.coco_utils import annotations_to_instance_map
from pns_mmdet.datasets import instance_map_to_coco
from pns_mmdet.datasets.io import load_instance_map

PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='NucleusPointsFromMasks'),
    dict(type='PackNucleusInputs'),
]


def build(root, ann='annotations/train.json', **kw):
    init_default_scope('mmdet')
    from mmdet.registry import DATASETS
    cfg = dict(type='NucleusDataset',
               data_root=root,
               ann_file=ann,
               data_prefix=dict(img='images/'),
               pipeline=PIPELINE)
    cfg.update(kw)
    return DATASETS.build(cfg)


def test_synthetic_through_pipeline(synthetic_coco):
    ds = build(synthetic_coco)
    assert len(ds) == 6
    assert ds.metainfo['classes'][0] == 'Neoplastic'
    with open(osp.join(synthetic_coco, 'annotations/train.json')) as f:
        coco = json.load(f)
    img0 = coco['images'][0]
    anns = [a for a in coco['annotations'] if a['image_id'] == img0['id']]
    out = ds[0]
    ds_ = out['data_samples']
    assert ds_.metainfo['tissue'] == img0['tissue']
    assert out['inputs'].shape == (3, 256, 256)
    gi = ds_.gt_instances
    assert len(gi) == len(anns)
    assert gi.labels.tolist() == [a['category_id'] - 1 for a in anns]
    # masks equal the instance map written next to the image
    inst = load_instance_map(
        osp.join(synthetic_coco, 'inst_maps', img0['file_name']))
    ids = [a['inst_id'] for a in anns]
    for m, i in zip(gi.masks.masks, ids):
        np.testing.assert_array_equal(m.astype(bool), inst == i)
    np.testing.assert_array_equal(ds_.gt_sem_seg.sem_seg[0].numpy(),
                                  (inst > 0).astype(np.uint8))
    for (x, y), m in zip(gi.points.numpy(), gi.masks.masks):
        assert m[int(np.floor(y + .5)), int(np.floor(x + .5))]


@pytest.fixture
def tiny_root(tmp_path):
    """3 images: one with 2 nuclei (one a single pixel), one empty, one
    with a class-2 nucleus; categories in reverse order in the JSON."""
    root = str(tmp_path / 'tiny')
    inst = np.zeros((12, 10), np.int32)
    inst[2:5, 2:6] = 1
    inst[8, 8] = 2
    img = np.full((12, 10, 3), 200, np.uint8)
    samples = [
        dict(stem='a',
             image=img,
             inst_map=inst,
             inst_classes={
                 1: 1,
                 2: 1
             },
             tissue='Lung'),
        dict(stem='b', image=img, inst_map=np.zeros_like(inst)),
        dict(stem='c',
             image=img,
             inst_map=(inst == 1).astype(np.int32),
             inst_classes={1: 2}),
    ]
    paths = instance_map_to_coco(samples, root, classes=('x', 'y'))
    with open(paths['train']) as f:
        coco = json.load(f)
    # reverse category order in the file: labels must follow names
    coco['categories'] = coco['categories'][::-1]
    with open(paths['train'], 'w') as f:
        json.dump(coco, f)
    return root


def test_tiny_dataset_labels_by_name_empty_and_tiny(tiny_root):
    ds = build(tiny_root, metainfo=dict(classes=('x', 'y')))
    assert len(ds) == 3  # empty image kept
    a, b, c = (ds[i]['data_samples'] for i in range(3))
    assert a.gt_instances.labels.tolist() == [0, 0]
    assert a.gt_instances.points.numpy().tolist() == [[3.5, 3.0], [8.0, 8.0]]
    assert a.metainfo['tissue'] == 'Lung'
    assert len(b.gt_instances) == 0 and b.metainfo['tissue'] is None
    assert c.gt_instances.labels.tolist() == [1]
    # class subset and reorder by name
    ds2 = build(tiny_root, metainfo=dict(classes=('y', 'x')))
    assert ds2[2]['data_samples'].gt_instances.labels.tolist() == [0]
    assert ds2[0]['data_samples'].gt_instances.labels.tolist() == [1, 1]


def _edit(root, fn):
    p = osp.join(root, 'annotations/train.json')
    with open(p) as f:
        coco = json.load(f)
    fn(coco)
    with open(p, 'w') as f:
        json.dump(coco, f)
    return p


def test_errors_missing_image_json_rle_classes(tiny_root):
    meta = dict(classes=('x', 'y'))
    os.remove(osp.join(tiny_root, 'images', 'b.png'))
    with pytest.raises(FileNotFoundError, match='image 2 .*b.png'):
        build(tiny_root, metainfo=meta)
    shutil.copy(osp.join(tiny_root, 'images', 'a.png'),
                osp.join(tiny_root, 'images', 'b.png'))
    with pytest.raises(ValueError, match=r"classes \['z'\].*set metainfo"):
        build(tiny_root, metainfo=dict(classes=('x', 'z')))
    good = open(osp.join(tiny_root, 'annotations/train.json')).read()

    def bad_rle(coco):
        seg = coco['annotations'][1]['segmentation']
        seg['counts'] = seg['counts'][:-1] + 'P'

    _edit(tiny_root, bad_rle)
    with pytest.raises(ValueError, match='image 1, annotation 2: malformed'):
        build(tiny_root, metainfo=meta)

    def bad_size(coco):
        coco['annotations'][0]['segmentation']['size'] = [10, 12]

    with open(osp.join(tiny_root, 'annotations/train.json'), 'w') as f:
        f.write(good)
    _edit(tiny_root, bad_size)
    with pytest.raises(ValueError, match='annotation 1: RLE size'):
        build(tiny_root, metainfo=meta)
    with open(osp.join(tiny_root, 'annotations/train.json'), 'w') as f:
        f.write(good[:-20])
    with pytest.raises(ValueError, match='malformed JSON in .*train.json'):
        build(tiny_root, metainfo=meta)
    with pytest.raises(FileNotFoundError, match='nope.json'):
        build(tiny_root, ann='annotations/nope.json', metainfo=meta)


def test_polygon_and_uncompressed_rle_annotations(tiny_root):
    """Foreign COCO files with polygons / list RLE load like our RLE."""
    p = osp.join(tiny_root, 'annotations/train.json')
    with open(p) as f:
        coco = json.load(f)
    ref = {
        i['id']:
        annotations_to_instance_map(
            [a
             for a in coco['annotations'] if a['image_id'] == i['id']], 12, 10)
        for i in coco['images']
    }
    c2 = copy.deepcopy(coco)
    c2['annotations'][0]['segmentation'] = [[2, 2, 6, 2, 6, 5, 2, 5]]
    m = np.zeros((12, 10), np.uint8)
    m[8, 8] = 1
    flat = m.T.ravel()
    idx = int(np.flatnonzero(flat)[0])
    runs = [idx, 1, flat.size - idx - 1]
    c2['annotations'][1]['segmentation'] = {'size': [12, 10], 'counts': runs}
    with open(p, 'w') as f:
        json.dump(c2, f)
    ds = build(tiny_root, metainfo=dict(classes=('x', 'y')))
    gi = ds[0]['data_samples'].gt_instances
    np.testing.assert_array_equal(gi.masks.masks[1].astype(bool), ref[1] == 2)
    # pycocotools' polygon rasterisation of the box (2,2)-(6,5)
    assert gi.masks.masks[0].sum() > 0
    # class-agnostic metainfo on a file without a 'nucleus' category
    with pytest.raises(ValueError, match=r"\['nucleus'\]"):
        build(tiny_root, metainfo=NUCLEUS_METAINFO)
    assert isinstance(ds, NucleusDataset)
