"""Segment the nuclei of a cohort of whole slides on a Ray cluster.

Each Ray worker builds the model once and runs slides one after another
with the resumable slide runner of tools/infer_wsi.py, into
OUT_DIR/<slide stem>/ (same files as infer_wsi). OUT_DIR/cohort.csv lists
every slide (slide, status, nuclei, seconds, worker, error) and is updated
as slides finish. A worker that dies is replaced and its slide continues
from the last finished tile; running the same command again skips the
finished slides.

Without --address a local Ray instance is started on this machine; with
--address auto (or HOST:PORT) the command joins an existing cluster
(`ray start --head`), whose nodes must see the slides, the config and
OUT_DIR at the same paths (docs/cohort.md).

Examples:
    python tools/infer_cohort.py configs/promptnucseg_kumar.py \
        'slides/*.svs' --out-dir out --workers 2
    python tools/infer_cohort.py configs/promptnucseg_kumar.py \
        /shared/slides --out-dir /shared/out --address auto \
        --gpus-per-worker 1
"""
import argparse
import math
import os
import os.path as osp
import socket
import sys


sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
# Slide collection, output stems and the model resolution are infer_wsi's.
from infer_wsi import collect_slides, model_mpp_of, output_stems  # noqa
from slide_options import add_slide_arguments, slide_usage_error  # noqa

TAG = '[infer_cohort]'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Cohort nucleus segmentation with PromptNucSeg on Ray '
        '(one model per worker, resumable slides, cohort.csv manifest)')
    parser.add_argument('config', help='PromptNucSeg config file')
    parser.add_argument(
        'inputs',
        nargs='+',
        help='slide files, folders (their slides, not recursive) or glob '
        'patterns (quote them)')
    parser.add_argument(
        '--out-dir',
        required=True,
        help='folder for the per-slide outputs and cohort.csv (shared by '
        'every node on a cluster)')
    ray_args = parser.add_argument_group('Ray')
    ray_args.add_argument(
        '--address',
        help='Ray cluster to join: "auto" (the cluster started on this '
        'node with `ray start`) or HOST:PORT of its head; default: start '
        'a local Ray instance')
    ray_args.add_argument(
        '--workers',
        type=int,
        help='model workers (Ray actors); default: as many as the '
        'cluster\'s CPUs (GPUs) allow, at most one per slide')
    ray_args.add_argument(
        '--cpus-per-worker',
        type=float,
        default=1.0,
        help='CPUs reserved per worker (also its torch threads)')
    ray_args.add_argument(
        '--gpus-per-worker',
        type=float,
        default=0.0,
        help='GPUs per worker (0: CPU; 0.5: two workers share a GPU)')
    ray_args.add_argument(
        '--max-retries',
        type=int,
        default=3,
        help='times a slide is resumed after its worker died')
    slide_args = parser.add_argument_group('slides (as tools/infer_wsi.py)')
    add_slide_arguments(
        slide_args, '--read-workers',
        'cpu or cuda[:N] (default: cuda with --gpus-per-worker > 0, else '
        'cpu)')
    return parser.parse_args(argv)


def usage_error(args) -> str:
    """The first problem with the numeric / combined options, or ''."""
    if args.workers is not None and args.workers < 1:
        return f'--workers must be >= 1, got {args.workers}'
    if not args.cpus_per_worker > 0:
        return f'--cpus-per-worker must be > 0, got {args.cpus_per_worker}'
    if not args.gpus_per_worker >= 0:
        return f'--gpus-per-worker must be >= 0, got {args.gpus_per_worker}'
    if args.max_retries < 0:
        return f'--max-retries must be >= 0, got {args.max_retries}'
    device = args.device or ''
    if device.startswith('cuda') and args.gpus_per_worker == 0:
        # Ray hides the GPUs from workers that reserved none.
        return (f'--device {device} needs --gpus-per-worker > 0 (Ray gives '
                'GPUs only to workers that reserve them)')
    return ''


def head_reachable(address: str, timeout: float = 5.0) -> str:
    """'' when HOST:PORT accepts a TCP connection, else why not.

    ``ray.init(address=HOST:PORT)`` keeps retrying an unreachable head for
    minutes; this check fails in seconds with the reason.
    """
    target = address.split('://', 1)[-1]
    host, sep, port = target.rpartition(':')
    if not sep or not host or not port.isdigit():
        return (f'--address must be "auto" or HOST:PORT (e.g. '
                f'10.0.0.1:6379), got "{address}"')
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return ''
    except OSError as err:
        return f'{err.strerror or err}'


def connect(args) -> str:
    """Start or join Ray; '' on success, else the error message."""
    import logging

    import ray
    if args.address is None:
        cpus = os.cpu_count() or 1
        if args.workers is not None:
            # Asking for more workers than cores is the user's choice.
            cpus = max(cpus,
                       math.ceil(args.workers * args.cpus_per_worker))
        ray.init(num_cpus=cpus, include_dashboard=False,
                 logging_level=logging.WARNING)
        return ''
    if args.address != 'auto':
        why = head_reachable(args.address)
        if why:
            return (f'cannot reach the Ray head at {args.address} ({why}); '
                    'start it there with `ray start --head --port=PORT`, or '
                    'leave out --address to run on this machine only')
    try:
        ray.init(address=args.address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err) else ''
        return f'cannot join the Ray cluster at {args.address}: {first}'
    return ''


class _Progress:
    """tqdm bar over slides with nuclei/s and the running slides' tiles."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        self.done = 0
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return  # the per-slide lines remain
        self.bar = tqdm(total=total, desc='slides', unit='slide',
                        file=sys.stderr, dynamic_ncols=True)

    def __call__(self, snap) -> None:
        if self.bar is None:
            return
        tiles = ' '.join(f'{osp.basename(s)} {d}/{t}'
                         for s, d, t in snap['running'])
        self.bar.set_postfix_str(
            f'{snap["nuclei_per_second"]:.1f} nuclei/s {tiles}',
            refresh=False)
        self.bar.update(snap['done'] - self.done)
        self.done = snap['done']

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def main(argv=None) -> int:
    args = parse_args(argv)
    paths, problems = collect_slides(args.inputs)
    for msg in problems:
        print(f'{TAG} warning: {msg}', file=sys.stderr)
    if not paths:
        print(f'{TAG} error: no input slide found', file=sys.stderr)
        return 2
    problem = usage_error(args) or slide_usage_error(args, paths,
                                                     '--read-workers')
    if problem:
        print(f'{TAG} error: {problem}', file=sys.stderr)
        return 2
    # Heavy imports after argument checks, so bad usage fails fast.
    from pns_mmdet.apis import NucleusInferencer
    from pns_mmdet.engine import trust_checkpoints
    from pns_mmdet.utils import check_writable_dir
    from pns_mmdet.utils.config import ConfigFileError, load_config
    from pns_mmdet.wsi.cohort import CohortRunner, RunnerSpec
    try:
        # Unwritable or full output folder: say so before starting Ray.
        out_dir = check_writable_dir(args.out_dir)
    except OSError as err:
        print(f'{TAG} error: {err.strerror}', file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config, required=('model', ))
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        model_mpp = model_mpp_of(cfg, args.model_mpp, args.config)
    except (ConfigFileError, ValueError) as err:
        print(f'{TAG} error: {err}', file=sys.stderr)
        return 2
    # Local workers inherit it through the environment; remote ones get
    # the list in the spec.
    trust_checkpoints(args.trust_checkpoint)
    device = args.device or ('cuda' if args.gpus_per_worker > 0 else 'cpu')
    spec = RunnerSpec(
        args.config,
        model_mpp,
        device=device,
        prompter_checkpoint=args.prompter_checkpoint,
        segmentor_checkpoint=args.segmentor_checkpoint,
        cfg_options=args.cfg_options,
        trust_checkpoints=args.trust_checkpoint or (),
        tile_size=args.tile_size,
        overlap=args.overlap,
        read_workers=args.read_workers,
        gz=args.gz,
        # Looked up here, so a replacement installed in pns_mmdet.apis
        # (tests) reaches the workers.
        inferencer=NucleusInferencer)
    runner = CohortRunner(
        spec,
        out_dir,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
        max_task_retries=args.max_retries)
    stems = output_stems(paths)
    options = dict(
        slide_mpp=args.slide_mpp,
        tissue_mask=(osp.abspath(args.tissue_mask)
                     if args.tissue_mask else None),
        roi=args.roi)
    try:
        todo, _ = runner.plan(paths, stems, args.overwrite)
    except ValueError as err:
        print(f'{TAG} error: {err}', file=sys.stderr)
        return 2
    started = False
    if todo:
        try:
            import ray
        except ImportError:
            print(f'{TAG} error: Ray is not installed (it comes with '
                  '`make env`; or pip install -r requirements/runtime.txt)',
                  file=sys.stderr)
            return 2
        if not ray.is_initialized():
            problem = connect(args)
            if problem:
                print(f'{TAG} error: {problem}', file=sys.stderr)
                return 2
            started = True
    bar = _Progress(len(paths), bool(todo) and not args.no_progress)
    try:
        summary = runner.run(paths, stems, options, args.overwrite,
                             log=lambda line: bar.write(f'{TAG} {line}'),
                             progress=bar)
    except KeyboardInterrupt:
        bar.close()
        print(f'{TAG} interrupted; run the same command again to resume',
              file=sys.stderr)
        return 130
    except (RuntimeError, ValueError) as err:
        bar.close()
        print(f'{TAG} error: {err}', file=sys.stderr)
        return 2
    finally:
        if started:
            import ray
            ray.shutdown()
    bar.close()
    print(f'{TAG} {summary.finished} slide(s) finished, {summary.skipped} '
          f'already finished, {summary.failed} failed of {summary.total}; '
          f'{summary.nuclei} nuclei in {summary.seconds:.1f} s '
          f'({summary.nuclei_per_second:.1f} nuclei/s) on '
          f'{len(summary.workers)} worker(s); manifest '
          f'{osp.join(out_dir, "cohort.csv")}')
    return 1 if summary.failed else 0


if __name__ == '__main__':
    sys.exit(main())
