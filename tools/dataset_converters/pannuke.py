"""Convert the PanNuke folds to the pns_mmdet COCO layout.

Example (from the repository root)::

    python tools/dataset_converters/pannuke.py /path/to/pannuke data/pannuke

writes data/pannuke/images/<fold>_<j>.png and annotations/fold{1,2,3}.json;
configs/_base_/datasets/pannuke*.py pick the fold order (123, 213, 321).
"""
import argparse
import sys

from pns_mmdet.converters import convert_pannuke
from pns_mmdet.converters.cli import run_cli
from pns_mmdet.datasets import describe_splits


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('src',
                   help='folder with "Fold 1", "Fold 2", "Fold 3" '
                   '(official layout) or the three .npy files of one fold')
    p.add_argument('out', help='output root, e.g. data/pannuke')
    p.add_argument('--folds',
                   type=int,
                   nargs='+',
                   default=[1, 2, 3],
                   help='folds to convert (default: 1 2 3); for a flat '
                   'folder give the one fold number it holds')
    p.add_argument('--max-images',
                   type=int,
                   default=None,
                   help='only the first N images per fold (quick checks)')
    p.add_argument('--no-maps',
                   action='store_true',
                   help='do not write inst_maps/ and class_maps/')
    return p.parse_args(argv)


def main(argv=None) -> int:
    """Exit code 0, or 2 after a one-line error naming the bad input."""
    a = parse_args(argv)

    def run():
        paths = convert_pannuke(a.src,
                                a.out,
                                folds=a.folds,
                                max_images=a.max_images,
                                write_maps=not a.no_maps)
        print(describe_splits(paths))

    return run_cli('pannuke', run)


if __name__ == '__main__':
    sys.exit(main())
