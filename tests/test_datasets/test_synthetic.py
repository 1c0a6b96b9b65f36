"""Tests for the synthetic nucleus tile generator."""
import json
import os.path as osp

import numpy as np
import pytest

from pns_mmdet.datasets.coco_utils import annotations_to_instance_map
from pns_mmdet.datasets.io import load_image, load_instance_map
from pns_mmdet.datasets.synthetic import (SYNTHETIC_CLASSES, generate_tile,
                                          make_synthetic_dataset,
                                          touching_pairs)


def test_tile_deterministic_and_consistent():
    a = generate_tile(np.random.default_rng([3, 0, 1]), size=128)
    b = generate_tile(np.random.default_rng([3, 0, 1]), size=128)
    c = generate_tile(np.random.default_rng([3, 0, 2]), size=128)
    for k in ('image', 'inst_map', 'class_map'):
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a['image'], c['image'])
    inst, cls = a['inst_map'], a['class_map']
    assert a['image'].shape == (128, 128, 3) and a['image'].dtype == np.uint8
    n = inst.max()
    assert n > 0 and set(np.unique(inst)) == set(range(n + 1))  # consecutive
    assert set(a['inst_classes']) == set(range(1, n + 1))
    for i, c_ in a['inst_classes'].items():
        assert (cls[inst == i] == c_).all()
    assert (cls[inst == 0] == 0).all()
    assert a['pairs'] == touching_pairs(inst)


def test_touching_fraction_controls_pairs():

    def frac(tf):
        tot = inn = 0
        for i in range(6):
            t = generate_tile(np.random.default_rng([0, 9, i]),
                              touching_fraction=tf)
            tot += t['inst_map'].max()
            inn += len({a for p in t['pairs'] for a in p})
        return inn / tot

    assert frac(0.0) < 0.05  # free placement never overlaps
    assert frac(0.6) > 0.4


def test_classes_differ_in_size_and_colour():
    areas = {c: [] for c in range(1, 6)}
    grey = {c: [] for c in range(1, 6)}
    for i in range(8):
        t = generate_tile(np.random.default_rng([1, 1, i]))
        g = t['image'].mean(-1)
        for j, c in t['inst_classes'].items():
            m = t['inst_map'] == j
            areas[c].append(m.sum())
            grey[c].append(g[m].mean())
    med = {c: np.median(v) for c, v in areas.items() if v}
    # Neoplastic nuclei are larger than inflammatory and dead ones
    assert med[1] > 2 * med[2] and med[1] > 2 * med[4]
    # Epithelial lighter than inflammatory, and nuclei darker than stroma
    assert np.median(grey[5]) > np.median(grey[2]) + 10


def test_make_dataset_layout_and_exact_maps(tmp_path):
    root = str(tmp_path / 'syn')
    paths = make_synthetic_dataset(root,
                                   num_train=2,
                                   num_val=1,
                                   num_test=1,
                                   size=96,
                                   seed=5)
    assert sorted(paths) == ['test', 'train', 'val']
    with open(paths['train']) as f:
        coco = json.load(f)
    assert [c['name'] for c in coco['categories']] == list(SYNTHETIC_CLASSES)
    for im in coco['images']:
        assert im['tissue'] and im['file_name'].endswith('.png')
        anns = [a for a in coco['annotations'] if a['image_id'] == im['id']]
        inst = load_instance_map(osp.join(root, 'inst_maps', im['file_name']))
        np.testing.assert_array_equal(
            annotations_to_instance_map(anns, 96, 96), inst)
        cls = load_instance_map(osp.join(root, 'class_maps', im['file_name']))
        for a in anns:
            assert (cls[inst == a['inst_id']] == a['category_id']).all()
    # tile i of a split does not depend on the split sizes
    root2 = str(tmp_path / 'syn2')
    make_synthetic_dataset(root2,
                           num_train=3,
                           num_val=0,
                           num_test=0,
                           size=96,
                           seed=5)
    for stem in ('train_0000.png', 'train_0001.png'):
        np.testing.assert_array_equal(
            load_image(osp.join(root, 'images', stem)),
            load_image(osp.join(root2, 'images', stem)))


def test_bad_arguments():
    with pytest.raises(ValueError, match='touching_fraction'):
        generate_tile(np.random.default_rng(0), touching_fraction=1.5)
    with pytest.raises(ValueError, match='unknown tissue'):
        generate_tile(np.random.default_rng(0), tissue='Brain')
