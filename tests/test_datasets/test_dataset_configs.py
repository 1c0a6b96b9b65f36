"""Every dataset base config builds its datasets and runs its pipelines."""
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

from pns_mmdet.datasets import instance_map_to_coco
from pns_mmdet.datasets.synthetic import generate_tile

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG_DIR = osp.join(REPO, 'configs', '_base_', 'datasets')

# config -> (expected classes, ann files of train/val/test)
CASES = {
    'pannuke.py': (5, ('fold1', 'fold2', 'fold3')),
    'pannuke_fold213.py': (5, ('fold2', 'fold1', 'fold3')),
    'pannuke_fold321.py': (5, ('fold3', 'fold2', 'fold1')),
    'kumar.py': (1, ('train', 'val', 'test')),
    'cpm17.py': (1, ('train', 'val', 'test')),
    'synthetic.py': (5, ('train', 'val', 'test')),
    'pannuke_coco25.py': (2, ('train', 'val', 'test')),
}


def _make_root(root, classes, splits, size):
    samples = []
    for k, split in enumerate(sorted(set(splits))):
        t = generate_tile(np.random.default_rng([7, k]), size=size)
        cls = {
            i: 1 + (c - 1) % len(classes)
            for i, c in t['inst_classes'].items()
        }
        samples.append(
            dict(stem=split,
                 image=t['image'],
                 inst_map=t['inst_map'],
                 inst_classes=cls,
                 tissue=t['tissue'],
                 split=split))
    instance_map_to_coco(samples, root, classes=classes, write_maps=False)


@pytest.mark.parametrize('name', sorted(CASES))
def test_dataset_config(name, tmp_path):
    cfg = Config.fromfile(osp.join(CFG_DIR, name))
    n_cls, splits = CASES[name]
    classes = cfg.train_dataloader.dataset.metainfo['classes']
    assert len(classes) == n_cls
    loaders = (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader)
    for loader, split in zip(loaders, splits):
        assert loader.dataset.ann_file == f'annotations/{split}.json'
        assert loader.dataset.data_root.startswith('data/')
        assert loader.dataset.get('backend_args', None) is None
    assert cfg.val_dataloader.dataset.test_mode
    assert 'PackNucleusInputs' in [t['type'] for t in cfg.test_pipeline]
    pack = cfg.test_dataloader.dataset.pipeline[-1]
    assert {'ori_shape', 'img_shape', 'scale_factor',
            'tissue'} <= set(pack['meta_keys'])
    # CPM-17 crops 500 px (so make its tiles bigger than that)
    size = 520 if name == 'cpm17.py' else 96
    root = str(tmp_path / 'data')
    _make_root(root, classes, splits, size)
    init_default_scope('mmdet')
    from mmdet.registry import DATASETS
    for loader in loaders:
        ds_cfg = loader.dataset.copy()
        ds_cfg.data_root = root
        ds = DATASETS.build(ds_cfg)
        out = ds[0]
        sample = out['data_samples']
        assert out['inputs'].dtype.is_floating_point is False
        gi = sample.gt_instances
        assert len(gi.points) == len(gi.masks) == len(gi.labels)
        assert int(gi.labels.max()) < n_cls
        if name == 'cpm17.py' and loader is cfg.train_dataloader:
            assert out['inputs'].shape[1:] == (500, 500)
    # the segmentor pipeline (random 256 crop) runs on the same data
    ds_cfg = cfg.train_dataloader.dataset.copy()
    ds_cfg.data_root = root
    ds_cfg.pipeline = cfg.segmentor_train_pipeline
    out = DATASETS.build(ds_cfg)[0]
    assert max(out['inputs'].shape[1:]) <= 256
