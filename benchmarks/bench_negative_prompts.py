"""Negative prompts (paper Table 7) on synthetic tiles with many overlaps.

Trains the LiteMedSAM demo segmentor (configs/demo/segmentor_synthetic.py)
twice with the same seed, data and schedule: with K = 1 nearest negative
prompt and with K = 0 (positives only), on a synthetic dataset where most
nuclei touch or overlap another one. Both are then tested in oracle mode
(ground-truth centroid prompts) with the same K as in training; the K = 0
model is also tested with K = 1 at inference only (the paper finds that
negatives help only when used in training too), and, where the hardware runs
bfloat16 natively, the K = 1 model under bfloat16 autocast. Prints PQ, AJI,
DQ, SQ for each row.

Run from the repo root (about 25 min on 2 CPU cores):

    python benchmarks/bench_negative_prompts.py [--epochs 40] \
        [--work-dir work_dirs/bench_negative_prompts]
"""
import argparse
import os
import os.path as osp
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO, 'configs', 'demo', 'segmentor_synthetic.py')


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--work-dir', default='work_dirs/bench_negative_prompts')
    p.add_argument('--epochs', type=int, default=40,
                   help='training epochs, constant learning rate (the demo '
                   'config\'s 12 are too few for the decoder to learn the '
                   'negative token: K = 0 wins there)')
    p.add_argument('--num-train', type=int, default=16)
    p.add_argument('--num-test', type=int, default=6)
    p.add_argument('--touching-fraction', type=float, default=0.8,
                   help='fraction of nuclei placed against another one')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--ks', type=int, nargs='+', default=[1, 0],
                   help='values of K to train and test')
    return p.parse_args(argv)


def make_data(root: str, args: argparse.Namespace) -> None:
    from pns_mmdet.datasets.synthetic import make_synthetic_dataset
    if osp.isfile(osp.join(root, 'annotations', 'test.json')):
        return
    make_synthetic_dataset(
        root, num_train=args.num_train, num_val=1, num_test=args.num_test,
        seed=args.seed, touching_fraction=args.touching_fraction)


def build_runner(k: int, data_root: str, work_dir: str,
                 args: argparse.Namespace):
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(CONFIG)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=args.seed)
    cfg.model.num_neg_prompts = k
    root = data_root.rstrip('/') + '/'
    cfg.train_dataloader.dataset.data_root = root
    cfg.test_dataloader.dataset.data_root = root
    cfg.test_dataloader.dataset.ann_file = 'annotations/test.json'
    if args.epochs is not None:
        cfg.train_cfg.max_epochs = args.epochs
        cfg.param_scheduler = []
        cfg.default_hooks.checkpoint.interval = args.epochs
    # No validation: only the final test matters here.
    cfg.train_cfg.val_interval = cfg.train_cfg.max_epochs + 1
    cfg.val_dataloader = None
    cfg.val_cfg = None
    cfg.val_evaluator = None
    return Runner.from_cfg(cfg)


def test(runner, k: int, dtype=None) -> dict:
    model = runner.model
    # An explicit test-time override of the trained K (logged).
    model.test_cfg['num_neg_prompts'] = k
    model.test_cfg['autocast_dtype'] = dtype
    return runner.test()


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    data_root = osp.join(args.work_dir, 'data')
    make_data(data_root, args)
    rows = []
    start = time.perf_counter()
    from pns_mmdet.utils.autocast import native_bfloat16
    for k in args.ks:
        runner = build_runner(k, data_root,
                              osp.join(args.work_dir, f'k{k}'), args)
        runner.train()
        rows.append((f'train K={k}, test K={k}', test(runner, k)))
        if k == 0:
            rows.append(('train K=0, test K=1', test(runner, 1)))
        elif native_bfloat16(next(runner.model.parameters()).device):
            # Emulated bfloat16 (e.g. an AVX2-only CPU) would take hours.
            rows.append((f'train K={k}, test K={k}, bf16',
                         test(runner, k, 'bfloat16')))
    print(f'\nNegative prompts on synthetic tiles (touching fraction '
          f'{args.touching_fraction}, {args.num_train} train / '
          f'{args.num_test} test tiles), oracle prompts; '
          f'{(time.perf_counter() - start) / 60:.1f} min')
    header = f'{"run":<28}{"PQ":>8}{"AJI":>8}{"DQ":>8}{"SQ":>8}'
    print(header)
    print('-' * len(header))
    for name, m in rows:
        print(f'{name:<28}{m["nuclei/pq"]:>8.4f}{m["nuclei/aji"]:>8.4f}'
              f'{m["nuclei/dq"]:>8.4f}{m["nuclei/sq"]:>8.4f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
