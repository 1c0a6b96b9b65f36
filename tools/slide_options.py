"""The slide options of tools/infer_wsi.py and tools/infer_cohort.py.

One definition of the options a slide run takes (resolution, tissue, ROI,
tiles, checkpoints, outputs) and of their checks, so that the two tools
accept and refuse the same things. Beside the tools, not in the package,
so that bad usage is reported before torch and mmdet load.
"""
import os.path as osp
from typing import List

from mmengine.config import DictAction

__all__ = ['add_slide_arguments', 'slide_usage_error']


def add_slide_arguments(group, workers_flag: str, device_help: str) -> None:
    """Add the slide options to an argparse parser or argument group.

    Args:
        group: ``ArgumentParser`` or an argument group of one.
        workers_flag (str): Name of the tile-reading workers option
            (``--workers`` for infer_wsi, ``--read-workers`` for the cohort,
            whose ``--workers`` are model workers).
        device_help (str): Help of ``--device`` (its default differs).
    """
    group.add_argument(
        '--slide-mpp',
        type=float,
        help='level-0 µm/px of the slides (overrides their metadata; '
        'needed for slides without MPP)')
    group.add_argument(
        '--model-mpp',
        type=float,
        help='µm/px the model was trained at (default: the config\'s '
        'data_mpp)')
    group.add_argument(
        '--tissue-mask',
        help='tissue mask image (non-zero = tissue, covering the whole '
        'slide; one slide only) instead of automatic detection')
    group.add_argument(
        '--roi',
        type=int,
        nargs=4,
        metavar=('X', 'Y', 'W', 'H'),
        help='process only this region (level-0 pixels) of every slide')
    group.add_argument(
        workers_flag,
        type=int,
        default=1,
        help='tile-reading worker processes (0: read in the process that '
        'runs the model)')
    group.add_argument('--device', default=None, help=device_help)
    group.add_argument(
        '--overwrite',
        action='store_true',
        help='redo finished slides and drop unfinished runs')
    group.add_argument(
        '--tile-size',
        type=int,
        default=1024,
        help='processing tile side at the model resolution (px)')
    group.add_argument(
        '--overlap',
        type=int,
        default=128,
        help='processing tile overlap (px); half of it must exceed a '
        'nucleus diameter plus the engine margin')
    group.add_argument(
        '--gz', action='store_true', help='write nuclei.geojson.gz')
    group.add_argument(
        '--prompter-checkpoint', help='override model.prompter_checkpoint')
    group.add_argument(
        '--segmentor-checkpoint', help='override model.segmentor_checkpoint')
    group.add_argument(
        '--trust-checkpoint',
        action='append',
        metavar='PATH',
        help='fully unpickle this checkpoint file (only for files from a '
        'trusted source: unpickling can run code); repeatable')
    group.add_argument(
        '--no-progress', action='store_true', help='no progress bar')
    group.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. model.test_cfg.nms_iou_thr=0.3')


def slide_usage_error(args, paths: List[str], workers_flag: str) -> str:
    """The first problem with the slide options for these slides, or ''.

    Args:
        args: Parsed options of :func:`add_slide_arguments`.
        paths (list[str]): The slides to run.
        workers_flag (str): As given to :func:`add_slide_arguments`.
    """
    workers = getattr(args, workers_flag.lstrip('-').replace('-', '_'))
    if args.tissue_mask is not None and len(paths) > 1:
        return (f'--tissue-mask belongs to one slide, but {len(paths)} '
                'slides were given')
    if args.tissue_mask is not None and not osp.isfile(args.tissue_mask):
        return f'--tissue-mask {args.tissue_mask} does not exist'
    if args.tile_size < 32 or not 0 <= args.overlap < args.tile_size:
        return (f'need --tile-size >= 32 and 0 <= --overlap < --tile-size, '
                f'got {args.tile_size} and {args.overlap}')
    if workers < 0:
        return f'{workers_flag} must be >= 0, got {workers}'
    if args.slide_mpp is not None and args.slide_mpp <= 0:
        return f'--slide-mpp must be > 0, got {args.slide_mpp}'
    return ''
