"""Convert MoNuSeg / Kumar (images + Aperio XML polygons) to COCO.

Example (from the repository root)::

    python tools/dataset_converters/monuseg.py \
        ../shared/data/monuseg2018_test data/monuseg_test --split test
"""
import argparse
import sys

from pns_mmdet.converters import convert_monuseg
from pns_mmdet.converters.cli import run_cli
from pns_mmdet.datasets import describe_splits


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('src',
                   help='folder with images/ (or "Tissue Images/") '
                   'and annotations/ (or Annotations/) XML files')
    p.add_argument('out', help='output root, e.g. data/kumar')
    p.add_argument('--split',
                   default='train',
                   help='split name of the written JSON (default: train)')
    p.add_argument('--split-ratios',
                   type=float,
                   nargs=3,
                   default=None,
                   metavar=('TRAIN', 'VAL', 'TEST'),
                   help='seeded random train/val/test split instead')
    p.add_argument('--seed', type=int, default=0, help='split seed')
    p.add_argument('--image-dir', default=None, help='explicit image folder')
    p.add_argument('--xml-dir', default=None, help='explicit XML folder')
    p.add_argument('--rule',
                   choices=['skimage', 'pnpoly'],
                   default='skimage',
                   help='polygon fill rule (default: '
                   'skimage >= 0.16 draw.polygon)')
    p.add_argument('--no-maps',
                   action='store_true',
                   help='do not write inst_maps/ and class_maps/')
    p.add_argument('--append',
                   action='store_true',
                   help='add to existing annotations/<split>.json files '
                   'in OUT instead of overwriting them')
    return p.parse_args(argv)


def main(argv=None) -> int:
    """Exit code 0, or 2 after a one-line error naming the bad input."""
    a = parse_args(argv)

    def run():
        paths = convert_monuseg(a.src,
                                a.out,
                                split=a.split,
                                split_ratios=a.split_ratios,
                                seed=a.seed,
                                image_dir=a.image_dir,
                                xml_dir=a.xml_dir,
                                rule=a.rule,
                                write_maps=not a.no_maps,
                                append=a.append)
        print(describe_splits(paths))

    return run_cli('monuseg', run)


if __name__ == '__main__':
    sys.exit(main())
