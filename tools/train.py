"""Train a pns_mmdet model from an mmengine config.

Example:
    python tools/train.py configs/demo/prompter_synthetic.py
    python tools/train.py configs/prompter_pannuke.py --work-dir work_dirs/p \
        --cfg-options train_dataloader.batch_size=8
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from pns_mmdet.engine.autocast_optim_wrapper import amp_optim_wrapper
from pns_mmdet.engine.checkpoint import (CheckpointError,
                                        add_trust_checkpoint_argument,
                                        trust_checkpoints)
from pns_mmdet.engine.distributed import (cleanup_distributed,
                                         setup_distributed)
from pns_mmdet.utils import check_writable_dir
from pns_mmdet.utils.config import ConfigFileError, load_config

#: What this tool needs from a config (checked before any work).
REQUIRED_KEYS = ('model', 'train_dataloader', 'train_cfg',
                   'optim_wrapper')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a pns_mmdet model')
    parser.add_argument('config', help='path of the config file')
    parser.add_argument(
        '--work-dir', help='where logs and checkpoints are written '
        '(default: work_dirs/<config name>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or, with no value, from the '
        'latest checkpoint in the work dir')
    parser.add_argument(
        '--amp', action='store_true',
        help='mixed precision: float16 with loss scaling on GPUs, bfloat16 '
        'on CPUs that run it natively (AMX / AVX-512 BF16), else float32')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual total batch size')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. train_cfg.max_epochs=2 '
        '"model.bbox_head.num_classes=2"')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher for distributed training')
    add_trust_checkpoint_argument(parser)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args: argparse.Namespace) -> Config:
    """Merge the command line into the config."""
    cfg = load_config(args.config, REQUIRED_KEYS)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        # float16 + loss scaling on GPUs, bfloat16 where native on CPUs.
        amp_optim_wrapper(cfg.optim_wrapper)
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in \
                cfg.auto_scale_lr:
            raise RuntimeError(
                f'{args.config} has no "auto_scale_lr.base_batch_size", so '
                '--auto-scale-lr cannot be used with it')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None) -> int:
    """Train; returns 0, or 2 after a one-line error for a config, a
    checkpoint (refused, corrupt, missing) or an output folder that cannot
    be used."""
    args = parse_args(argv)
    try:
        cfg = build_config(args)
    except ConfigFileError as err:
        print(f'[train] error: {err}', file=sys.stderr)
        return 2
    try:
        # Unwritable or full work dir: say so before any model work.
        check_writable_dir(cfg.work_dir, '--work-dir')
    except OSError as err:
        print(f'[train] error: {err.strerror}', file=sys.stderr)
        return 2
    # Files named with --trust-checkpoint may be fully unpickled (with a
    # warning); every other checkpoint is loaded weights-only.
    trust_checkpoints(args.trust_checkpoint)
    # gloo on CPU / NCCL on CUDA, before mmengine's CUDA-only init_dist.
    setup_distributed(cfg)
    try:
        if 'runner_type' in cfg:
            runner = RUNNERS.build(cfg)
        else:
            runner = Runner.from_cfg(cfg)
        runner.train()
    except CheckpointError as err:
        print(f'[train] error: {err}', file=sys.stderr)
        return 2
    finally:
        cleanup_distributed()
    return 0


if __name__ == '__main__':
    sys.exit(main())
