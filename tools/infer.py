"""Segment nuclei in images with a PromptNucSeg config.

For every image, writes into OUT_DIR:
  <stem>_inst.png     16-bit instance map (0 = background, ids 1..N)
  <stem>_class.png    8-bit class map (0 = background, classes 1..C)
  <stem>.geojson      nucleus polygons for QuPath (File > Import objects)
  <stem>_overlay.png  outlines coloured by class (unless --no-overlay)
and one COCO-style JSON of the run (predictions_coco.json). Each image's
time is logged as it is done (mmengine logger, stdout), the total at the
end. tools/evaluate.py reads OUT_DIR as it is (the ``_inst`` suffix).

Examples:
    python tools/infer.py configs/demo/promptnucseg_synthetic.py \
        data/synthetic/images --out-dir work_dirs/infer
    python tools/infer.py configs/promptnucseg_kumar.py 'slides/*.png' \
        --out-dir out --device cuda --prompter-checkpoint p.pth \
        --segmentor-checkpoint s.pth
"""
import argparse
import os.path as osp
import sys
import time
from typing import List, Tuple

from mmengine.config import DictAction
from mmengine.logging import MMLogger

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from input_paths import collect_files, output_stems  # noqa: E402

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.tif', '.tiff', '.bmp')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Segment nuclei with PromptNucSeg (instance/class '
        'PNGs, QuPath GeoJSON, overlays, COCO JSON)')
    parser.add_argument('config', help='PromptNucSeg config file')
    parser.add_argument(
        'inputs',
        nargs='+',
        help='image files, folders (their images, not recursive) or glob '
        'patterns (quote them)')
    parser.add_argument(
        '--out-dir', required=True, help='folder for the outputs')
    parser.add_argument(
        '--device',
        default=None,
        help='cpu or cuda[:N] (default: cuda when available, else cpu)')
    parser.add_argument(
        '--prompter-checkpoint',
        help='trained prompter .pth (default: the config\'s '
        'model.prompter_checkpoint)')
    parser.add_argument(
        '--segmentor-checkpoint',
        help='trained segmentor .pth (default: the config\'s '
        'model.segmentor_checkpoint; --cfg-options '
        'model.segmentor_checkpoint=None runs the weights the segmentor '
        'config names, e.g. the packaged LiteMedSAM ones)')
    parser.add_argument(
        '--trust-checkpoint',
        action='append',
        metavar='PATH',
        help='fully unpickle this checkpoint file (only for files from a '
        'trusted source: unpickling can run code); repeatable')
    parser.add_argument(
        '--no-overlay', action='store_true', help='skip the overlay PNGs')
    parser.add_argument(
        '--thickness', type=int, default=1, help='outline width (pixels)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. model.test_cfg.nms_iou_thr=0.3')
    return parser.parse_args(argv)


def collect_images(inputs: List[str]) -> Tuple[List[str], List[str]]:
    """Expand files, folders and globs into image paths (and messages
    about inputs that gave none)."""
    return collect_files(inputs, IMAGE_EXTS, 'image')


def run_logger() -> MMLogger:
    """An mmengine logger for this run's per-image lines (stdout).

    A new instance per run, named by a timestamp as mmengine's Runner does,
    so it writes to the current ``sys.stdout`` (an instance made by an
    earlier run in the same process keeps the stream it was made with).
    """
    return MMLogger.get_instance(
        f'infer_{time.strftime("%Y%m%d_%H%M%S")}_{time.perf_counter_ns()}',
        logger_name='infer',
        log_level='INFO')


def main(argv=None) -> int:
    args = parse_args(argv)
    paths, problems = collect_images(args.inputs)
    for msg in problems:
        print(f'[infer] warning: {msg}', file=sys.stderr)
    if not paths:
        print('[infer] error: no input image found', file=sys.stderr)
        return 2
    # Heavy imports after argument checks, so bad usage fails fast.
    from pns_mmdet.apis import NucleusInferencer
    from pns_mmdet.datasets.io import load_image
    from pns_mmdet.engine import trust_checkpoints
    from pns_mmdet.utils import (ConfigFileError, check_writable_dir,
                                 load_config)
    from pns_mmdet.visualization import (CocoResultsWriter,
                                         draw_instance_contours,
                                         instances_to_geojson, save_class_png,
                                         save_geojson, save_instance_png,
                                         save_png)
    try:
        # Unwritable or full output folder: say so before any model work.
        check_writable_dir(args.out_dir)
    except OSError as err:
        print(f'[infer] error: {err.strerror}', file=sys.stderr)
        return 2
    trust_checkpoints(args.trust_checkpoint)

    # Made before the model so its build messages (e.g. which weights it
    # loads) go to the same stream as the per-image lines.
    logger = run_logger()
    try:
        cfg = load_config(args.config, ('model', ))
    except ConfigFileError as err:
        print(f'[infer] error: {err}', file=sys.stderr)
        return 2
    try:
        inferencer = NucleusInferencer(
            cfg,
            device=args.device,
            prompter_checkpoint=args.prompter_checkpoint,
            segmentor_checkpoint=args.segmentor_checkpoint,
            cfg_options=args.cfg_options)
    except (FileNotFoundError, RuntimeError, ValueError, KeyError) as err:
        # Missing or mismatched checkpoint, wrong config: one clear line.
        print(f'[infer] error: cannot build the model from {args.config}: '
              f'{err}', file=sys.stderr)
        return 2
    coco = CocoResultsWriter(inferencer.class_names)
    failed, num_nuclei = [], 0
    start = time.perf_counter()
    for i, (path, stem) in enumerate(zip(paths, output_stems(paths)), 1):
        image_start = time.perf_counter()
        try:
            image = load_image(path)
        except (OSError, ValueError) as err:
            # Unreadable or truncated file: report it, go on with the rest.
            failed.append((path, str(err)))
            logger.warning(f'{i}/{len(paths)} {path}: skipped, {err}')
            continue
        result = inferencer(image)
        base = osp.join(args.out_dir, stem)
        save_instance_png(base + '_inst.png', result.inst_map)
        save_class_png(base + '_class.png', result.class_map())
        save_geojson(
            instances_to_geojson(
                result.inst_map,
                result.labels,
                result.scores,
                inferencer.class_names,
                inferencer.palette,
                image_name=osp.basename(path)), base + '.geojson')
        if not args.no_overlay:
            overlay = draw_instance_contours(image, result.inst_map,
                                             result.labels,
                                             inferencer.palette,
                                             args.thickness)
            save_png(base + '_overlay.png', overlay[..., ::-1])
        coco.add(osp.basename(path), result.inst_map, result.labels,
                 result.scores)
        num_nuclei += result.num_nuclei
        # Wall time with reading and writing; "model" is the prediction.
        logger.info(f'{i}/{len(paths)} {path}: {result.num_nuclei} nuclei, '
                    f'{time.perf_counter() - image_start:.2f} s (model '
                    f'{result.seconds:.2f} s)')
    coco_path = osp.join(args.out_dir, 'predictions_coco.json')
    coco.dump(coco_path)
    seconds = time.perf_counter() - start
    done = len(paths) - len(failed)
    for path, err in failed:
        print(f'[infer] skipped {path}: {err}', file=sys.stderr)
    print(f'[infer] {done} image(s), {num_nuclei} nuclei, {seconds:.1f} s '
          f'({seconds / max(done, 1):.2f} s/image); {len(failed)} failed; '
          f'outputs in {args.out_dir} (COCO JSON: {coco_path})')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
