"""Load a converted dataset through the test pipeline and print statistics.

Example (from the repository root)::

    python tools/dataset_converters/check_dataset.py data/synthetic \
        annotations/train.json
"""
import argparse

from pns_mmdet.converters import check_coco_dataset


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('data_root', help='dataset root, e.g. data/synthetic')
    p.add_argument('ann_file', help='annotation file relative to data_root')
    p.add_argument('--classes',
                   nargs='+',
                   default=None,
                   help='class names (default: the file categories)')
    p.add_argument('--max-images', type=int, default=None)
    return p.parse_args()


def main():
    a = parse_args()
    stats = check_coco_dataset(a.data_root, a.ann_file, a.classes,
                               a.max_images)
    for k, v in stats.items():
        print(f'{k}: {v}')


if __name__ == '__main__':
    main()
