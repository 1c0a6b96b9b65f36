"""Segment every nucleus of whole slides with a PromptNucSeg config.

Slides are read at the model's resolution (the config's ``data_mpp``, or
``--model-mpp``), processed tile by tile in bounded memory, and written per
slide into OUT_DIR/<slide stem>/ (coordinates in level-0 slide pixels):
  nuclei.geojson[.gz]    QuPath detections (File > Import objects)
  nuclei.db              SQLite + R*-tree (pns_mmdet.wsi.NucleusStore)
  nuclei.csv             one row per nucleus: centroid, class, score,
                         morphology in µm, mean H/E optical density
  tissue_mask.png, thumbnail_overlay.png, run.json

A killed run started again with the same command continues from the last
finished tile; finished slides are skipped unless --overwrite.

Examples:
    python tools/infer_wsi.py configs/demo/promptnucseg_synthetic.py \
        work_dirs/demo/slide.tiff --out-dir work_dirs/demo/wsi
    python tools/infer_wsi.py configs/promptnucseg_kumar.py 'slides/*.svs' \
        --out-dir out --device cuda --workers 4
"""
import argparse
import os.path as osp
import sys
import time
from typing import List, Tuple


sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from input_paths import collect_files, output_stems  # noqa: E402
from slide_options import (add_slide_arguments,  # noqa: E402
                           slide_usage_error)

SLIDE_EXTS = ('.svs', '.ndpi', '.mrxs', '.scn', '.vms', '.vmu', '.bif',
              '.svslide', '.tif', '.tiff', '.png', '.jpg', '.jpeg')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Whole-slide nucleus segmentation with PromptNucSeg '
        '(QuPath GeoJSON, SQLite, CSV; resumable)')
    parser.add_argument('config', help='PromptNucSeg config file')
    parser.add_argument(
        'inputs',
        nargs='+',
        help='slide files, folders (their slides, not recursive) or glob '
        'patterns (quote them)')
    parser.add_argument(
        '--out-dir', required=True, help='folder for the per-slide outputs')
    add_slide_arguments(
        parser, '--workers',
        'cpu or cuda[:N] (default: cuda when available, else cpu)')
    return parser.parse_args(argv)


def collect_slides(inputs: List[str]) -> Tuple[List[str], List[str]]:
    """Expand files, folders and globs into slide paths (and messages
    about inputs that gave none)."""
    return collect_files(inputs, SLIDE_EXTS, 'slide')


class _Progress:
    """tqdm bar when installed (tiles/s, nuclei, ETA), else mmengine's."""

    def __init__(self, name: str, enabled: bool) -> None:
        self.name = name
        self.enabled = enabled
        self.bar = None
        self.last = 0

    def start(self, total: int) -> None:
        if not self.enabled:
            return
        try:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=self.name, unit='tile',
                            file=sys.stderr, dynamic_ncols=True)
            self.kind = 'tqdm'
        except ImportError:
            from mmengine.utils import ProgressBar
            self.bar = ProgressBar(total, file=sys.stderr)
            self.kind = 'mmengine'

    def update(self, done: int, total: int, nuclei: int) -> None:
        if self.bar is None:
            return
        if self.kind == 'tqdm':
            self.bar.set_postfix(nuclei=nuclei, refresh=False)
            self.bar.update(done - self.last)
        else:
            for _ in range(done - self.last):
                self.bar.update()
        self.last = done

    def close(self) -> None:
        if self.bar is not None and self.kind == 'tqdm':
            self.bar.close()
        elif self.bar is not None:
            sys.stderr.write('\n')
        self.bar = None


def model_mpp_of(cfg, given, config_path) -> float:
    """The model's µm/px: --model-mpp, else the config's data_mpp."""
    data_mpp = cfg.get('data_mpp', None)
    if given is not None:
        if given <= 0:
            raise ValueError(f'--model-mpp must be > 0, got {given}')
        return float(given)
    if data_mpp is None:
        raise ValueError(
            f'{config_path} has no data_mpp (the µm/px the model was '
            'trained at, e.g. data_mpp = 0.25 for 40x Kumar/PanNuke): add '
            'it to the config or pass --model-mpp')
    if not isinstance(data_mpp, (int, float)) or data_mpp <= 0:
        raise ValueError(f'{config_path}: data_mpp must be a positive '
                         f'number (µm/px), got {data_mpp!r}')
    return float(data_mpp)


def main(argv=None) -> int:
    args = parse_args(argv)
    paths, problems = collect_slides(args.inputs)
    for msg in problems:
        print(f'[infer_wsi] warning: {msg}', file=sys.stderr)
    if not paths:
        print('[infer_wsi] error: no input slide found', file=sys.stderr)
        return 2
    problem = slide_usage_error(args, paths, '--workers')
    if problem:
        print(f'[infer_wsi] error: {problem}', file=sys.stderr)
        return 2
    # Heavy imports after argument checks, so bad usage fails fast.
    from pns_mmdet.utils import check_writable_dir
    from pns_mmdet.utils.config import load_config
    from pns_mmdet.wsi.cohort_worker import RunnerSpec
    try:
        # Unwritable or full output folder: say so before any model work.
        check_writable_dir(args.out_dir)
    except OSError as err:
        print(f'[infer_wsi] error: {err.strerror}', file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config, required=('model', ))
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        model_mpp = model_mpp_of(cfg, args.model_mpp, args.config)
        # The one construction of model + runner (also the cohort's).
        runner = RunnerSpec(
            args.config,
            model_mpp,
            device=args.device,
            prompter_checkpoint=args.prompter_checkpoint,
            segmentor_checkpoint=args.segmentor_checkpoint,
            cfg_options=args.cfg_options,
            trust_checkpoints=args.trust_checkpoint or (),
            tile_size=args.tile_size,
            overlap=args.overlap,
            read_workers=args.workers,
            gz=args.gz).build()
    except (FileNotFoundError, RuntimeError, ValueError, KeyError) as err:
        # Missing or mismatched checkpoint, wrong config: one clear line.
        print(f'[infer_wsi] error: cannot build the model from '
              f'{args.config}: {err}', file=sys.stderr)
        return 2
    failed, total_nuclei = [], 0
    start = time.perf_counter()
    for path, stem in zip(paths, output_stems(paths)):
        bar = _Progress(stem, not args.no_progress)
        try:
            summary = runner.run(
                path,
                osp.join(args.out_dir, stem),
                slide_mpp=args.slide_mpp,
                tissue_mask=args.tissue_mask,
                roi=args.roi,
                overwrite=args.overwrite,
                progress=bar.update,
                on_start=bar.start)
        except KeyboardInterrupt:
            bar.close()
            print(f'[infer_wsi] interrupted during {path}; run the same '
                  'command again to resume', file=sys.stderr)
            return 130
        except Exception as err:  # noqa: BLE001
            # A bad slide (unreadable, no MPP, bad ROI...) must not stop
            # the others: report it and go on.
            bar.close()
            failed.append((path, f'{type(err).__name__}: {err}'))
            print(f'[infer_wsi] failed {path}: {failed[-1][1]}',
                  file=sys.stderr)
            continue
        bar.close()
        total_nuclei += summary.nuclei
        print(f'[infer_wsi] {summary.line()}', flush=True)
    seconds = time.perf_counter() - start
    done = len(paths) - len(failed)
    for path, err in failed:
        print(f'[infer_wsi] skipped {path}: {err}', file=sys.stderr)
    print(f'[infer_wsi] {done} slide(s), {total_nuclei} nuclei, '
          f'{seconds:.1f} s; {len(failed)} failed; outputs in '
          f'{args.out_dir}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
