"""Generate a seeded synthetic H&E-like nucleus dataset (COCO layout).

Example (from the repository root)::

    python tools/dataset_converters/make_synthetic.py data/synthetic \
        --num-train 16 --num-val 4 --num-test 4 --size 256
"""
import argparse
import time

from pns_mmdet.datasets import describe_splits
from pns_mmdet.datasets.synthetic import make_synthetic_dataset


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('out',
                   nargs='?',
                   default='data/synthetic',
                   help='output root (default: data/synthetic)')
    p.add_argument('--num-train', type=int, default=16)
    p.add_argument('--num-val', type=int, default=4)
    p.add_argument('--num-test', type=int, default=4)
    p.add_argument('--size', type=int, default=256, help='tile side')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--touching-fraction',
                   type=float,
                   default=0.4,
                   help='fraction of nuclei placed against another one '
                   '(half touching, half overlapping)')
    p.add_argument('--num-nuclei',
                   type=int,
                   nargs=2,
                   default=[15, 45],
                   metavar=('MIN', 'MAX'),
                   help='nuclei per 256x256 area')
    p.add_argument('--empty-prob',
                   type=float,
                   default=0.0,
                   help='probability of a tile without nuclei')
    p.add_argument('--no-maps',
                   action='store_true',
                   help='do not write inst_maps/ and class_maps/')
    return p.parse_args()


def main():
    a = parse_args()
    t0 = time.time()
    paths = make_synthetic_dataset(a.out,
                                   num_train=a.num_train,
                                   num_val=a.num_val,
                                   num_test=a.num_test,
                                   size=a.size,
                                   seed=a.seed,
                                   touching_fraction=a.touching_fraction,
                                   num_nuclei=tuple(a.num_nuclei),
                                   empty_prob=a.empty_prob,
                                   write_maps=not a.no_maps)
    print(describe_splits(paths))
    print(f'done in {time.time() - t0:.1f} s')


if __name__ == '__main__':
    main()
