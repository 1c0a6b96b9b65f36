"""Both metrics through mmengine's Evaluator on samples packed by the real
test pipeline (synthetic COCO data), i.e. the data contract of
docs/design.md."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from PIL import Image

import pns_mmdet  # noqa: F401
from pns_mmdet.evaluation.functional import (instance_metrics,
                                             paint_instance_masks)


@pytest.fixture(scope='module')
def packed_test_set(synthetic_coco, repo_root):
    from mmdet.registry import DATASETS
    from mmengine.config import Config
    init_default_scope('mmdet')
    cfg = Config.fromfile(
        osp.join(repo_root, 'configs/_base_/datasets/synthetic.py'))
    ds_cfg = cfg.test_dataloader.dataset
    ds_cfg.data_root = synthetic_coco
    dataset = DATASETS.build(ds_cfg)
    return dataset, [dataset[i] for i in range(len(dataset))]


def _predict_gt(sample, drop: int = 0):
    """A 'model' that returns the GT minus its first ``drop`` nuclei."""
    ds = sample['data_samples'].clone()
    gt = ds.gt_instances
    keep = slice(drop, None)
    ds.pred_instances = InstanceData(
        masks=torch.from_numpy(gt.masks.masks[keep].astype(bool)),
        labels=gt.labels[keep],
        scores=torch.linspace(1, 0.5, len(gt))[keep],
        points=gt.points[keep])
    return ds


def test_packed_gt_masks_reproduce_the_instance_maps(packed_test_set,
                                                     synthetic_coco):
    _, samples = packed_test_set
    for sample in samples:
        ds = sample['data_samples']
        painted = paint_instance_masks(ds.gt_instances.masks.masks)
        stem = osp.splitext(osp.basename(ds.img_path))[0]
        on_disk = np.array(
            Image.open(osp.join(synthetic_coco, 'inst_maps', stem + '.png')))
        assert instance_metrics(on_disk, painted) == dict(
            aji=1.0, aji_plus=1.0, dq=1.0, sq=1.0, pq=1.0)


def test_evaluator_perfect_and_dropped(packed_test_set):
    dataset, samples = packed_test_set
    assert len(dataset.metainfo['classes']) == 5
    for drop in (0, 2):
        evaluator = Evaluator([
            dict(type='NucleusInstanceMetric'),
            dict(type='PointDetectionMetric')
        ])
        evaluator.dataset_meta = dataset.metainfo
        preds = [_predict_gt(s, drop) for s in samples]
        for s in preds:
            assert s.tissue is not None  # packed by PackNucleusInputs
        evaluator.process(preds)
        res = evaluator.evaluate(len(preds))
        n_gt = sum(len(s.gt_instances) for s in preds)
        if drop == 0:
            for key in ('nuclei/aji', 'nuclei/pq', 'nuclei/bpq',
                        'nuclei/mpq', 'points/f1', 'points/cls_f1',
                        'points/type_f1'):
                assert res[key] == 1.0, key
        else:
            assert res['points/precision'] == 1.0
            assert res['points/recall'] == pytest.approx(
                (n_gt - drop * len(preds)) / n_gt)
            assert res['nuclei/dq'] < 1.0 and res['nuclei/sq'] == 1.0
