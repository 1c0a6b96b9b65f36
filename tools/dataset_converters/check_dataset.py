"""Load a converted dataset through the test pipeline and print statistics.

Example (from the repository root)::

    python tools/dataset_converters/check_dataset.py data/synthetic \
        annotations/train.json
"""
import argparse
import sys

from pns_mmdet.converters import check_coco_dataset
from pns_mmdet.converters.cli import run_cli


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('data_root', help='dataset root, e.g. data/synthetic')
    p.add_argument('ann_file', help='annotation file relative to data_root')
    p.add_argument('--classes',
                   nargs='+',
                   default=None,
                   help='class names (default: the file categories)')
    p.add_argument('--max-images', type=int, default=None)
    return p.parse_args(argv)


def main(argv=None) -> int:
    """Exit code 0, or 2 after a one-line error naming the bad input."""
    a = parse_args(argv)

    def run():
        stats = check_coco_dataset(a.data_root, a.ann_file, a.classes,
                                   a.max_images)
        for k, v in stats.items():
            print(f'{k}: {v}')

    return run_cli('check_dataset', run)


if __name__ == '__main__':
    sys.exit(main())
