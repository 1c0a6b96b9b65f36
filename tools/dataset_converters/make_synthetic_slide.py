"""Write a seeded synthetic H&E whole slide (pyramidal tiled TIFF).

Tissue islands on an empty glass background, with synthetic nuclei of the
training data's renderer; openslide opens the file as ``generic-tiff`` with
the given MPP. Example (from the repository root)::

    python tools/dataset_converters/make_synthetic_slide.py \
        data/slides/synthetic.tiff --size 3000 --mpp 0.25
"""
import argparse
import sys
import time

from pns_mmdet.wsi.synthetic_slide import (SYNTHETIC_RENDER_MPP,
                                           make_synthetic_slide)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('out', help='output .tif/.tiff')
    p.add_argument('--size', type=int, nargs='+', default=[4096],
                   metavar='PX', help='level-0 side, or W H (default 4096)')
    p.add_argument('--mpp', type=float, default=SYNTHETIC_RENDER_MPP,
                   help='µm per level-0 pixel written in the TIFF '
                   f'(default {SYNTHETIC_RENDER_MPP})')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--tile', type=int, default=256, help='TIFF tile side')
    p.add_argument('--compression', choices=['jpeg', 'deflate'],
                   default='jpeg')
    p.add_argument('--quality', type=int, default=90, help='JPEG quality')
    p.add_argument('--islands', type=int, default=4,
                   help='number of tissue islands')
    a = p.parse_args(argv)
    if len(a.size) not in (1, 2):
        p.error('--size takes one side or W H')
    return a


def main(argv=None):
    a = parse_args(argv)
    size = a.size[0] if len(a.size) == 1 else tuple(a.size)
    t0 = time.time()
    try:
        info = make_synthetic_slide(a.out, size=size, mpp=a.mpp,
                                    seed=a.seed, tile=a.tile,
                                    compression=a.compression,
                                    quality=a.quality, islands=a.islands)
    except ValueError as err:
        print(f'[make_synthetic_slide] error: {err}', file=sys.stderr)
        return 2
    w, h = info['size']
    print(f'{info["path"]}: {w}x{h} px at {info["mpp"]} µm/px, '
          f'{len(info["level_dimensions"])} levels, '
          f'{info["num_nuclei"]} nuclei, tissue '
          f'{100 * info["tissue_fraction"]:.1f} %, '
          f'{time.time() - t0:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
