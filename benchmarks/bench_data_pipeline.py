"""Speed of the data layer: synthetic tiles, points from masks, pipelines.

Prints seconds per item. Uses a synthetic dataset generated into a temporary
folder, plus data/monuseg_test when it exists (1000 x 1000 tiles with
~480 nuclei, Kumar-sized), so it runs anywhere:

    python benchmarks/bench_data_pipeline.py
"""
import os.path as osp
import tempfile
import time

import numpy as np
from mmengine.config import Config
from mmengine.registry import init_default_scope

import pns_mmdet  # noqa: F401
from pns_mmdet.datasets.synthetic import (SYNTHETIC_CLASSES, generate_tile,
                                          make_synthetic_dataset)
from pns_mmdet.datasets.transforms.nucleus_points import mask_points

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def timeit(fn, n):
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def bench_pipelines(root, ann, classes, n):
    """Time the three pipelines of the dataset base configs on ``root``."""
    init_default_scope('mmdet')
    from mmdet.registry import DATASETS
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/_base_/datasets/synthetic.py'))
    for name in ('train_pipeline', 'segmentor_train_pipeline',
                 'test_pipeline'):
        ds_cfg = cfg.train_dataloader.dataset.copy()
        ds_cfg.update(data_root=root,
                      ann_file=ann,
                      pipeline=cfg[name],
                      metainfo=dict(classes=classes))
        ds = DATASETS.build(ds_cfg)
        k = min(n, len(ds))
        t = timeit(lambda: [ds[i] for i in range(k)], 1) / k
        print(f'  {name:26s} {t * 1000:8.1f} ms/sample')


def main():
    rng = np.random.default_rng(0)
    t = timeit(lambda: generate_tile(rng, size=256), 20)
    print(f'generate_tile 256x256: {t * 1000:.1f} ms/tile')
    tile = generate_tile(np.random.default_rng(1), size=256)
    ids = np.unique(tile['inst_map'])[1:]
    masks = (tile['inst_map'][None] == ids[:, None, None]).astype(np.uint8)
    t = timeit(lambda: mask_points(masks), 50)
    print(f'mask_points {len(ids)} nuclei 256x256: {t * 1000:.2f} ms')
    with tempfile.TemporaryDirectory() as tmp:
        make_synthetic_dataset(tmp, num_train=8, num_val=0, num_test=0)
        print('synthetic 256x256 (PanNuke-sized):')
        bench_pipelines(tmp, 'annotations/train.json', SYNTHETIC_CLASSES, 8)
    mon = osp.join(REPO, 'data', 'monuseg_test')
    if osp.isdir(mon):
        from pns_mmdet.datasets.io import load_instance_map
        inst = load_instance_map(
            osp.join(mon, 'inst_maps', 'TCGA-2Z-A9J9-01A-01-TS1.png'))
        ids = np.unique(inst)[1:]
        masks = (inst[None] == ids[:, None, None]).astype(np.uint8)
        t = timeit(lambda: mask_points(masks), 3)
        print(f'mask_points {len(ids)} nuclei 1000x1000: {t * 1000:.1f} ms')
        print('monuseg_test 1000x1000 (Kumar-sized):')
        bench_pipelines(mon, 'annotations/test.json', ('nucleus', ), 3)


if __name__ == '__main__':
    main()
