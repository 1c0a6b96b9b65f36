"""PromptNucSeg demo on synthetic tiles, offline, on CPU (`make demo`).

Steps (each a plain command of the repo's own tools, printed before it
runs, so they can be re-run by hand):

1. generate the synthetic dataset (data/synthetic, unless present),
2. train the demo prompter (configs/demo/prompter_synthetic.py),
3. train the LiteMedSAM demo segmentor (configs/demo/segmentor_synthetic.py),
4. test the end-to-end model (configs/demo/promptnucseg_synthetic.py) and
   print its metrics,
5. run tools/infer.py on a few held-back tiles (one larger than a tile) and
   print where the overlays and GeoJSON files are.

A second run reuses the dataset and the trained weights
(work_dirs/demo/{prompter,segmentor}.pth) unless --retrain is given.

Usage: python tools/demo.py [--retrain] [--work-dir work_dirs/demo]
"""
import argparse
import hashlib
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
from typing import List, Optional

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PROMPTER_CFG = 'configs/demo/prompter_synthetic.py'
SEGMENTOR_CFG = 'configs/demo/segmentor_synthetic.py'
E2E_CFG = 'configs/demo/promptnucseg_synthetic.py'
DEFAULT_DATA = 'data/synthetic'


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument(
        '--retrain',
        action='store_true',
        help='train both parts again even if their weights exist')
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument(
        '--data-root',
        default=DEFAULT_DATA,
        help='synthetic dataset root (generated when missing)')
    p.add_argument('--num-train', type=int, default=16)
    p.add_argument('--num-val', type=int, default=4)
    p.add_argument('--num-test', type=int, default=4)
    p.add_argument(
        '--prompter-epochs',
        type=int,
        default=None,
        help='override the prompter config\'s max_epochs')
    p.add_argument(
        '--segmentor-epochs',
        type=int,
        default=None,
        help='override the segmentor config\'s max_epochs')
    p.add_argument(
        '--device',
        default='cpu',
        help='device of the inference step (training uses the default)')
    p.add_argument('--prompter-config', default=PROMPTER_CFG)
    p.add_argument('--segmentor-config', default=SEGMENTOR_CFG)
    p.add_argument(
        '--config',
        default=E2E_CFG,
        help='end-to-end PromptNucSeg config (its parts should be the two '
        'configs above)')
    return p.parse_args(argv)


def run(cmd: List[str]) -> None:
    """Run one step with the current interpreter, echoing the command."""
    shown = ' '.join(['python'] + cmd[1:])
    print(f'\n[demo] $ {shown}', flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO)
    if proc.returncode:
        raise SystemExit(f'[demo] step failed (exit {proc.returncode}): '
                         f'{shown}')
    print(f'[demo] step done in {time.perf_counter() - start:.0f} s',
          flush=True)


def data_options(data_root: str,
                 splits=('train', 'val', 'test')) -> List[str]:
    """--cfg-options pointing the splits' dataloaders at ``data_root``
    (none when it is the configs' default)."""
    if osp.normpath(data_root) == osp.normpath(DEFAULT_DATA):
        return []
    root = data_root.rstrip('/') + '/'
    return [f'{split}_dataloader.dataset.data_root={root}' for split in splits]


def last_checkpoint(work_dir: str) -> str:
    """Checkpoint path recorded by mmengine's CheckpointHook."""
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        raise SystemExit(f'[demo] no checkpoint was written in {work_dir} '
                         '(training did not finish?)')
    with open(marker) as f:
        path = f.read().strip()
    if not osp.isabs(path):
        path = osp.join(REPO, path)
    return path


def recipe_of(config: str, options: List[str],
              inputs: Optional[dict] = None) -> dict:
    """What a trained part depends on: its config (path and a hash of the
    fully resolved config, so an edited base file counts), the
    --cfg-options and any ``inputs`` (e.g. the stamp of its data)."""
    from mmengine.config import Config
    resolved = json.dumps(Config.fromfile(config).to_dict(), sort_keys=True,
                          default=repr).replace(REPO, '<repo>')
    return dict(config=config,
                config_sha256=hashlib.sha256(resolved.encode()).hexdigest(),
                options=list(options), **(inputs or {}))


def write_stamp(path: str, recipe: dict) -> None:
    """Record ``recipe`` in the JSON file ``path`` (beside what it made)."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        json.dump(recipe, f, indent=1, sort_keys=True)
    os.replace(path + '.tmp', path)


def require_stamp(path: str, recipe: dict, what: str, remedy: str) -> None:
    """Stop with a message naming the differing fields when the stamp
    ``path`` (written by :func:`write_stamp`) is missing or records
    another recipe than ``recipe``: ``what`` was made by another recipe
    and reusing it would give silently stale results."""
    if not osp.isfile(path):
        raise SystemExit(f'[demo] {what} has no recipe stamp ({path}): it '
                         f'was made by an older version; {remedy}')
    with open(path) as f:
        recorded = json.load(f)
    differs = sorted(k for k in set(recorded) | set(recipe)
                     if recorded.get(k) != recipe.get(k))
    if differs:
        raise SystemExit(f'[demo] {what} was made by another recipe '
                         f'(differs in {", ".join(differs)}; see {path}); '
                         f'{remedy}')


def train_part(name: str, config: str, out_ckpt: str, work_dir: str,
               epochs: Optional[int], options: List[str],
               retrain: bool, resume: bool = False,
               inputs: Optional[dict] = None) -> None:
    """Train one part into ``work_dir/name`` and copy its last checkpoint
    to ``out_ckpt``; with ``resume``, a killed run continues from its last
    checkpoint.

    Finished weights are reused unless ``retrain``, and only when the
    stamp beside them (``<out_ckpt>.recipe.json``) records the same recipe
    (:func:`recipe_of` of the config, options and ``inputs``); likewise a
    killed run is resumed only under the recipe it started with.
    Otherwise the step stops and asks for ``--retrain``.
    """
    extra = list(options)
    if epochs is not None:
        extra += [
            f'train_cfg.max_epochs={epochs}',
            f'train_cfg.val_interval={epochs}'
        ]
    recipe = recipe_of(config, extra, inputs)
    done_stamp = out_ckpt + '.recipe.json'
    if osp.isfile(out_ckpt) and not retrain:
        require_stamp(done_stamp, recipe, f'the trained {name} {out_ckpt}',
                      'pass --retrain to train it again')
        print(f'[demo] reusing the trained {name}: {out_ckpt} '
              '(--retrain to train again)')
        return
    part_dir = osp.join(work_dir, name)
    if retrain and osp.isdir(part_dir):
        shutil.rmtree(part_dir)
    run_stamp = osp.join(part_dir, 'recipe.json')
    cmd = [sys.executable, 'tools/train.py', config, '--work-dir', part_dir]
    if resume and osp.isfile(osp.join(part_dir, 'last_checkpoint')):
        require_stamp(run_stamp, recipe,
                      f'the interrupted {name} run in {part_dir}',
                      'pass --retrain to start it afresh')
        cmd.append('--resume')
    else:
        write_stamp(run_stamp, recipe)
    if extra:
        cmd += ['--cfg-options'] + extra
    run(cmd)
    shutil.copyfile(last_checkpoint(part_dir), out_ckpt)
    write_stamp(done_stamp, recipe)
    print(f'[demo] {name} weights: {out_ckpt}')


def latest_test_metrics(test_dir: str) -> dict:
    """Metrics of the newest ``tools/test.py`` run in ``test_dir`` (the
    ``<timestamp>/<timestamp>.json`` that mmengine's LoggerHook writes)."""
    import glob
    runs = sorted(glob.glob(osp.join(test_dir, '*', '*.json')))
    if not runs:
        raise SystemExit(f'[demo] no test metrics found in {test_dir}')
    with open(runs[-1]) as f:
        return json.load(f)


def format_metric_table(metrics: dict) -> str:
    """The headline nucleus metrics (and per-class PQ) as a small table."""
    rows = [(name, metrics.get(f'nuclei/{key}'))
            for name, key in (('bPQ', 'bpq'), ('mPQ', 'mpq'), ('PQ', 'pq'),
                              ('DQ', 'dq'), ('SQ', 'sq'), ('AJI', 'aji'),
                              ('AJI+', 'aji_plus'))]
    rows += [(f'PQ {key[len("nuclei/pq_"):]}', value)
             for key, value in metrics.items()
             if key.startswith('nuclei/pq_')]
    lines = [f'{"metric":<22}{"value":>8}', '-' * 30]
    lines += [
        f'{name:<22}{value:>8.4f}' for name, value in rows
        if isinstance(value, (int, float))
    ]
    return '\n'.join(lines)


def make_heldout(out_dir: str) -> List[str]:
    """A few synthetic tiles never used in training or testing: two
    256 x 256 tiles and a 600 x 600 one (tiled inference)."""
    import cv2
    import numpy as np

    from pns_mmdet.datasets.synthetic import generate_tile
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for i, size in enumerate((256, 256, 600)):
        path = osp.join(out_dir, f'heldout_{i}_{size}px.png')
        if not osp.isfile(path):
            # Seeds outside the dataset's (seed, split, index) streams.
            tile = generate_tile(np.random.default_rng([9001, i]), size=size)
            cv2.imwrite(path, tile['image'][..., ::-1])
        paths.append(path)
    return paths


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    os.chdir(REPO)
    work_dir = args.work_dir
    os.makedirs(work_dir, exist_ok=True)
    options = data_options(args.data_root)

    # 1. data
    ann = osp.join(args.data_root, 'annotations', 'test.json')
    if osp.isfile(ann) and not args.retrain:
        print(f'[demo] reusing the synthetic dataset in {args.data_root}')
    else:
        run([
            sys.executable, 'tools/dataset_converters/make_synthetic.py',
            args.data_root, '--num-train',
            str(args.num_train), '--num-val',
            str(args.num_val), '--num-test',
            str(args.num_test)
        ])

    # 2-3. the two parts, each with its own config
    prompter_ckpt = osp.join(work_dir, 'prompter.pth')
    segmentor_ckpt = osp.join(work_dir, 'segmentor.pth')
    train_part('prompter', args.prompter_config, prompter_ckpt, work_dir,
               args.prompter_epochs, options, args.retrain)
    train_part('segmentor', args.segmentor_config, segmentor_ckpt, work_dir,
               args.segmentor_epochs, options, args.retrain)

    # 4. end-to-end test (the metric table is logged by the evaluator)
    ckpt_options = [
        f'model.prompter_checkpoint={prompter_ckpt}',
        f'model.segmentor_checkpoint={segmentor_ckpt}'
    ]
    # (test-only config: no train dataloader to redirect)
    run([
        sys.executable, 'tools/test.py', args.config, '--work-dir',
        osp.join(work_dir, 'test'), '--cfg-options'
    ] + data_options(args.data_root, ('val', 'test')) + ckpt_options)

    # 5. inference on held-back tiles
    heldout = make_heldout(osp.join(work_dir, 'heldout'))
    infer_dir = osp.join(work_dir, 'infer')
    run([
        sys.executable, 'tools/infer.py', args.config,
        osp.dirname(heldout[0]), '--out-dir', infer_dir, '--device',
        args.device, '--prompter-checkpoint', prompter_ckpt,
        '--segmentor-checkpoint', segmentor_ckpt
    ])

    # 6. a small whole slide: pyramidal TIFF with its MPP, streamed in
    # processing tiles, QuPath GeoJSON / CSV / SQLite / overlay per slide.
    slide = osp.join(work_dir, 'slide', 'synthetic_slide.tif')
    if not osp.isfile(slide) or args.retrain:
        run([
            sys.executable, 'tools/dataset_converters/make_synthetic_slide.py',
            slide, '--size', '1536', '--mpp', '0.25'
        ])
    wsi_dir = osp.join(work_dir, 'wsi')
    run([
        sys.executable, 'tools/infer_wsi.py', args.config, slide,
        '--out-dir', wsi_dir, '--device', args.device,
        '--prompter-checkpoint', prompter_ckpt, '--segmentor-checkpoint',
        segmentor_ckpt, '--tile-size', '768', '--workers', '1',
        # retrained weights would otherwise find the slide "finished"
        '--overwrite'
    ])
    slide_out = osp.join(wsi_dir, osp.splitext(osp.basename(slide))[0])

    print(f'\n[demo] finished in {(time.perf_counter() - start) / 60:.1f} '
          'min')
    print('[demo] end-to-end test metrics (synthetic test tiles):')
    print(format_metric_table(latest_test_metrics(osp.join(work_dir,
                                                           'test'))))
    print(f'[demo] metrics log: {osp.join(work_dir, "test")}/*/*.log')
    print(f'[demo] overlays:    {infer_dir}/*_overlay.png')
    print(f'[demo] QuPath:      {infer_dir}/*.geojson '
          '(File > Import objects from file, on the matching image)')
    print(f'[demo] maps:        {infer_dir}/*_inst.png, *_class.png; '
          f'COCO JSON: {infer_dir}/predictions_coco.json')
    print(f'[demo] whole slide: {slide} ->')
    print(f'[demo]   QuPath:    {slide_out}/nuclei.geojson (open the '
          'slide, then File > Import objects from file)')
    print(f'[demo]   table:     {slide_out}/nuclei.csv (pandas), '
          f'{slide_out}/nuclei.db (SQLite, pns_mmdet.wsi.NucleusStore)')
    print(f'[demo]   overlay:   {slide_out}/thumbnail_overlay.png, '
          f'tissue: {slide_out}/tissue_mask.png, run: {slide_out}/run.json')
    return 0


if __name__ == '__main__':
    sys.exit(main())
