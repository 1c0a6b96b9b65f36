"""Convert a folder of images + a folder of instance maps to COCO.

Maps (16-bit PNG, TIFF, .npy, .npz, .mat) are matched to images by stem.
Example (from the repository root)::

    python tools/dataset_converters/generic.py \
        ../shared/data/cpm15_train/images \
        ../shared/data/cpm15_train/inst_masks data/cpm15
"""
import argparse
import sys

from pns_mmdet.converters import convert_generic
from pns_mmdet.converters.cli import run_cli
from pns_mmdet.datasets import describe_splits


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('images', help='image folder')
    p.add_argument('inst_maps', help='instance-map folder (same stems)')
    p.add_argument('out', help='output root, e.g. data/mydata')
    p.add_argument('--class-maps',
                   default=None,
                   help='class-map folder (same stems; values 1..C)')
    p.add_argument('--classes',
                   nargs='+',
                   default=['nucleus'],
                   help='class names for class-map values 1..C '
                   '(default: nucleus)')
    p.add_argument('--split',
                   default='train',
                   help='split name when not splitting (default: train)')
    p.add_argument('--split-ratios',
                   type=float,
                   nargs=3,
                   default=None,
                   metavar=('TRAIN', 'VAL', 'TEST'),
                   help='seeded random train/val/test split')
    p.add_argument('--seed', type=int, default=0, help='split seed')
    p.add_argument('--tissue',
                   default=None,
                   help='tissue name stored on every image')
    p.add_argument('--map-suffix',
                   default='',
                   help='suffix stripped from map stems, e.g. _mask')
    p.add_argument('--class-suffix',
                   default='',
                   help='suffix stripped from class-map stems')
    p.add_argument('--map-key',
                   default=None,
                   help='array key inside .mat/.npz instance maps')
    p.add_argument('--class-key',
                   default=None,
                   help='array key inside .mat/.npz class maps')
    p.add_argument('--no-maps',
                   action='store_true',
                   help='do not write inst_maps/ and class_maps/')
    p.add_argument('--append',
                   action='store_true',
                   help='add to existing annotations/<split>.json files '
                   'in OUT instead of overwriting them')
    p.add_argument('--include',
                   nargs='+',
                   default=None,
                   metavar='PATTERN',
                   help='convert only instance maps whose stem matches one '
                   "of these shell patterns, e.g. 'image0[1-7]'")
    p.add_argument('--exclude',
                   nargs='+',
                   default=None,
                   metavar='PATTERN',
                   help='skip stems matching these patterns')
    p.add_argument('--scale',
                   type=float,
                   default=1.0,
                   help='resize images and maps by this factor, e.g. 2 to '
                   'bring 20x tiles to 40x (labels: nearest; default 1)')
    return p.parse_args(argv)


def main(argv=None) -> int:
    """Exit code 0, or 2 after a one-line error naming the bad input."""
    a = parse_args(argv)

    def run():
        paths = convert_generic(a.images,
                                a.inst_maps,
                                a.out,
                                classes=a.classes,
                                class_dir=a.class_maps,
                                split=a.split,
                                split_ratios=a.split_ratios,
                                seed=a.seed,
                                tissue=a.tissue,
                                map_suffix=a.map_suffix,
                                class_suffix=a.class_suffix,
                                map_key=a.map_key,
                                class_key=a.class_key,
                                write_maps=not a.no_maps,
                                append=a.append,
                                include=a.include,
                                exclude=a.exclude,
                                scale=a.scale)
        print(describe_splits(paths))

    return run_cli('generic', run)


if __name__ == '__main__':
    sys.exit(main())
