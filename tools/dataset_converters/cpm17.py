"""Convert CPM-17 (train/test folders of Images/*.png + Labels/*.mat).

Example (from the repository root)::

    python tools/dataset_converters/cpm17.py /path/to/cpm17 data/cpm17
"""
import argparse
import sys

from pns_mmdet.converters import convert_cpm17
from pns_mmdet.converters.cli import run_cli
from pns_mmdet.datasets import describe_splits


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('src', help='CPM-17 root with train/ and test/')
    p.add_argument('out', help='output root, e.g. data/cpm17')
    p.add_argument('--splits',
                   nargs='+',
                   default=['train', 'test'],
                   help='split folders to convert (default: train test)')
    p.add_argument('--no-maps',
                   action='store_true',
                   help='do not write inst_maps/ and class_maps/')
    return p.parse_args(argv)


def main(argv=None) -> int:
    """Exit code 0, or 2 after a one-line error naming the bad input."""
    a = parse_args(argv)

    def run():
        paths = convert_cpm17(a.src,
                              a.out,
                              splits=a.splits,
                              write_maps=not a.no_maps)
        print(describe_splits(paths))

    return run_cli('cpm17', run)


if __name__ == '__main__':
    sys.exit(main())
