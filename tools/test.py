"""Test (evaluate) a pns_mmdet model with the evaluator of its config.

Example:
    python tools/test.py configs/demo/prompter_synthetic.py \
        work_dirs/prompter_synthetic/epoch_20.pth --out preds.pkl
    # an end-to-end PromptNucSeg config loads its two checkpoints itself:
    python tools/test.py configs/demo/promptnucseg_synthetic.py
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from pns_mmdet.engine.checkpoint import (CheckpointError,
                                        add_trust_checkpoint_argument,
                                        trust_checkpoints)
from pns_mmdet.engine.distributed import (cleanup_distributed,
                                         setup_distributed)
from pns_mmdet.utils import check_writable_dir
from pns_mmdet.utils.config import ConfigFileError, load_config

#: What this tool needs from a config (checked before any work).
REQUIRED_KEYS = ('model', 'test_dataloader', 'test_cfg',
                   'test_evaluator')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a pns_mmdet model')
    parser.add_argument('config', help='path of the config file')
    parser.add_argument(
        'checkpoint',
        nargs='?',
        default=None,
        help='checkpoint file; optional for configs that load their own '
        'weights (PromptNucSeg)')
    parser.add_argument(
        '--work-dir',
        help='where logs and metrics are written '
        '(default: work_dirs/<config name>)')
    parser.add_argument(
        '--out',
        type=str,
        help='dump the predictions to this pickle file (.pkl)')
    parser.add_argument(
        '--show', action='store_true', help='show predictions in a window')
    parser.add_argument(
        '--show-dir',
        help='write overlays of the predictions into this folder, relative '
        'to the timestamped folder of the work dir')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='seconds between --show')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. test_dataloader.batch_size=1')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher for distributed testing')
    add_trust_checkpoint_argument(parser)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def enable_visualization(cfg: Config, args: argparse.Namespace) -> None:
    """Switch on mmdet's DetVisualizationHook for --show / --show-dir."""
    hooks = cfg.default_hooks
    if 'visualization' not in hooks:
        raise RuntimeError(
            f'{args.config} has no "default_hooks.visualization" entry, so '
            '--show/--show-dir cannot be used with it')
    hooks.visualization.draw = True
    if args.show:
        hooks.visualization.show = True
        hooks.visualization.wait_time = args.wait_time
    if args.show_dir:
        hooks.visualization.test_out_dir = args.show_dir


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
    if args.checkpoint is not None:
        if not osp.isfile(args.checkpoint):
            raise FileNotFoundError(
                f'checkpoint "{args.checkpoint}" does not exist')
        cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    return cfg


def main(argv=None) -> int:
    """Test; returns 0, or 2 after a one-line error for a config, a
    checkpoint (refused, corrupt, missing) or an output folder that cannot
    be used."""
    args = parse_args(argv)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        print(f'[test] error: --out must be a .pkl file, got "{args.out}"',
              file=sys.stderr)
        return 2
    try:
        cfg = build_config(args)
    except (ConfigFileError, FileNotFoundError) as err:
        print(f'[test] error: {err}', file=sys.stderr)
        return 2
    try:
        # Unwritable or full folders: say so before any model work.
        check_writable_dir(cfg.work_dir, '--work-dir')
        if args.out is not None:
            check_writable_dir(osp.dirname(osp.abspath(args.out)),
                               '--out folder')
    except OSError as err:
        print(f'[test] error: {err.strerror}', file=sys.stderr)
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
        if args.out is not None:
            # mmdet's DumpDetResults RLE-encodes masks; it expects pred
            # masks.
            from mmdet.evaluation import DumpDetResults
            runner.test_evaluator.metrics.append(
                DumpDetResults(out_file_path=args.out))
        runner.test()
    except CheckpointError as err:
        # PromptNucSeg loads its part checkpoints while the runner builds
        # the model, load_from when the test starts: both end up here.
        print(f'[test] error: {err}', file=sys.stderr)
        return 2
    finally:
        cleanup_distributed()
    return 0


if __name__ == '__main__':
    sys.exit(main())
