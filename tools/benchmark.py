"""Speed and peak memory of PromptNucSeg: prompter, segmentor, end to end.

For each case (segmentor x dtype x image size x device) a fresh subprocess
builds the model of CONFIG with random prompter weights and the chosen
segmentor (SAM ViT-B with random weights, or LiteMedSAM with its packaged
weights; speed does not depend on the weights) and times, on a synthetic
H&E-like image with a fixed set of point prompts (its nuclei; 100 prompts
on a 256 x 256 tile as in the authors' reference, about 400 nuclei on a
1000 x 1000 image):

* prompter:  ``predict_points`` (normalisation, forward, point NMS),
* segmentor: ``segment_points`` (tiles, encoder, decoder, edge drop,
  per-prompt best, box NMS, painting) with the fixed prompts,
* end2end:   both in sequence.
* upstream (with ``--upstream``): the authors' segmentor work on the same
  prompts and tiles (plain SAM blocks, embedding copied per prompt, all mask
  tokens, 256 x 256 upsampling), a same-machine reference.

It prints seconds per image (median wall time, plus CPU time divided by
the torch threads, a contention-robust estimate on a shared machine),
images per second and peak memory (resident set size of the process on
CPU, ``max_memory_allocated`` on CUDA), and how much the instances of each
case agree with the fp32 reference path (``decode_policy='all'``, one tile
per encoder call): matched fraction at IoU > 0.5 and mean IoU.

Usage (from the repository root)::

    python tools/benchmark.py configs/promptnucseg_kumar.py
    python tools/benchmark.py configs/promptnucseg_pannuke.py --sizes 256 \
        --segmentors sam-b --dtypes fp32 bf16 --runs 5

Reference (authors' code, this 2-core CPU machine, SAM-B fp32): 0.90 s per
256 x 256 tile end to end (prompter 0.20 s + SAM-B with 100 prompts
0.69 s), 16.4 s per 1000 x 1000 image with about 400 nuclei (prompter
3.3 s + 25 tiles 13.1 s).
"""
import argparse
import json
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEGMENTORS = {
    'sam-b': 'configs/_base_/models/segmentor_sam-b.py',
    'litemedsam': 'configs/_base_/models/segmentor_litemedsam.py',
}
REFERENCE = {256: 0.90, 1000: 16.4}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', help='PromptNucSeg config')
    p.add_argument(
        '--segmentors', nargs='+', default=list(SEGMENTORS),
        choices=list(SEGMENTORS))
    p.add_argument(
        '--dtypes', nargs='+', default=['fp32', 'bf16'],
        choices=['fp32', 'bf16', 'fp16'])
    p.add_argument('--sizes', nargs='+', type=int, default=[256, 1000])
    p.add_argument(
        '--devices', nargs='+', default=None,
        help='default: cpu, plus cuda when available')
    p.add_argument('--runs', type=int, default=3)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument(
        '--threads', type=int, default=None,
        help='torch CPU threads (default: torch\'s own choice)')
    p.add_argument(
        '--prompts-256', type=int, default=100,
        help='prompts on a 256 x 256 tile')
    p.add_argument(
        '--nuclei-1000', type=int, default=400,
        help='approximate nuclei on a 1000 x 1000 image (scaled by area '
        'for other sizes)')
    p.add_argument(
        '--no-check', action='store_true',
        help='skip the agreement check against the fp32 reference path')
    p.add_argument(
        '--cfg-options', nargs='+', default=[],
        help='model.test_cfg overrides as key=value (python literals), '
        'e.g. decode_policy="central" encode_batch=2')
    p.add_argument(
        '--upstream', action='store_true',
        help='also time the authors\' segmentor work on the same prompts '
        '(plain SAM blocks, embedding copied per prompt) as a same-machine '
        'reference')
    p.add_argument(
        '--real-tile', default=None, metavar='IMAGE',
        help='time a real tile instead of the synthetic ones (e.g. '
        '../shared/data/monuseg2018_test/images/<name>.png); its instance '
        'map (../inst_masks/<name>.png beside images/) gives the prompts, '
        'one per ground-truth nucleus, so point counts are real; --sizes '
        'is then ignored')
    p.add_argument(
        '--force-bf16', action='store_true',
        help='time bf16 even on a CPU without native bfloat16')
    p.add_argument('--single', help=argparse.SUPPRESS)
    return p.parse_args(argv)


def synthetic_case(size: int, num_prompts: int):
    """A synthetic image and one prompt per nucleus (exactly
    ``num_prompts``: extra nuclei are dropped, missing ones are filled with
    random pixels)."""
    import numpy as np
    import torch

    from pns_mmdet.datasets.synthetic import generate_tile
    per_256 = max(1, round(num_prompts * 256 * 256 / (size * size)))
    tile = generate_tile(
        np.random.default_rng([7, size]),
        size=size,
        num_nuclei=(per_256, per_256))
    inst = tile['inst_map']
    pts = []
    for i in np.unique(inst)[1:]:
        ys, xs = np.nonzero(inst == i)
        k = np.argmin((xs - xs.mean())**2 + (ys - ys.mean())**2)
        pts.append((xs[k], ys[k]))
    rng = np.random.default_rng(1)
    while len(pts) < num_prompts:
        pts.append(tuple(rng.integers(0, size, 2)))
    pts = np.asarray(pts[:num_prompts], dtype=np.float32)
    labels = torch.from_numpy(
        np.asarray([tile['inst_classes'].get(int(inst[int(y), int(x)]), 1)
                    - 1 for x, y in pts]).clip(0))
    return tile['image'], torch.from_numpy(pts), labels


def real_case(image_path: str):
    """A real tile and one prompt per ground-truth nucleus (the interior
    pixel nearest its centroid), labels 0."""
    import numpy as np
    import torch

    from pns_mmdet.datasets.io import load_image, load_instance_map
    folder, name = osp.split(image_path)
    map_path = osp.join(osp.dirname(folder), 'inst_masks', name)
    image = load_image(image_path)
    inst = load_instance_map(map_path)
    pts = []
    for i in np.unique(inst)[1:]:
        ys, xs = np.nonzero(inst == i)
        k = np.argmin((xs - xs.mean())**2 + (ys - ys.mean())**2)
        pts.append((xs[k], ys[k]))
    pts = np.asarray(pts, dtype=np.float32).reshape(-1, 2)
    return image, torch.from_numpy(pts), torch.zeros(len(pts),
                                                     dtype=torch.long)


def build(config: str, segmentor: str, dtype: str, device: str,
          overrides: dict):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(osp.join(REPO, config))
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    import pns_mmdet  # noqa: F401
    from mmdet.registry import MODELS
    seg_cfg = Config.fromfile(osp.join(REPO, SEGMENTORS[segmentor])).model
    if segmentor == 'sam-b':
        seg_cfg.checkpoint = None  # random weights
    cfg.model.segmentor = seg_cfg
    cfg.model.prompter_checkpoint = None
    cfg.model.segmentor_checkpoint = None
    backbone = cfg.model.prompter.backbone
    for key in ('checkpoint', 'init_cfg'):
        if key in backbone:
            backbone[key] = None
    cfg.model.test_cfg.autocast_dtype = None if dtype == 'fp32' else {
        'bf16': 'bfloat16',
        'fp16': 'float16'
    }[dtype]
    cfg.model.test_cfg.update(overrides)
    return MODELS.build(cfg.model).to(device).eval(), cfg


def agreement(ref_map, map_) -> tuple:
    """Fraction of reference instances matched at IoU > 0.5 and their mean
    best IoU."""
    import numpy as np
    ref_map = ref_map.astype(np.int64)
    map_ = map_.astype(np.int64)
    n_ref, n = int(ref_map.max()), int(map_.max())
    if n_ref == 0:
        return (1.0, 1.0) if n == 0 else (0.0, 0.0)
    inter = np.bincount(
        ref_map.ravel() * (n + 1) + map_.ravel(),
        minlength=(n_ref + 1) * (n + 1)).reshape(n_ref + 1, n + 1)[1:, 1:]
    area_r = np.bincount(ref_map.ravel(), minlength=n_ref + 1)[1:]
    area_p = np.bincount(map_.ravel(), minlength=n + 1)[1:]
    union = area_r[:, None] + area_p[None] - inter
    iou = (inter / np.maximum(union, 1)).max(axis=1) if n else np.zeros(
        n_ref)
    present = area_r > 0
    return float((iou[present] > 0.5).mean()), float(iou[present].mean())


def plain_reference_encoder(model, encoder_cfg: dict):
    """The segmentor's image encoder rebuilt from its config with
    ``segment_anything``'s plain blocks (``padded_window_attention=False``)
    and the same weights: the authors' encoder. Encoders without that switch
    (LiteMedSAM's TinyViT) are returned as they are."""
    from mmdet.registry import MODELS
    encoder = model.segmentor.image_encoder
    if not hasattr(encoder, 'padded_window_attention'):
        return encoder
    cfg = dict(encoder_cfg, padded_window_attention=False)
    plain = MODELS.build(cfg)
    plain.load_state_dict(encoder.state_dict())
    param = next(encoder.parameters())
    return plain.to(param.device).train(encoder.training)


def upstream_style_segmentor(model, img, points, encoder) -> int:
    """The authors' segmentor work for the same prompts, as a same-machine
    reference: per 256 x 256 tile (same tiles), ``encoder`` (from
    :func:`plain_reference_encoder`: segment_anything's plain ViT blocks,
    window padding before the qkv projection), its
    ``MaskDecoder.forward`` (image embedding copied per prompt, all mask
    tokens) on the tile's prompts with K nearest negatives, and the logits
    upsampled to 256 x 256 and thresholded. Skips their NMS and painting
    (cheap), so the reference is if anything too fast. Returns the number
    of masks."""
    import torch
    import torch.nn.functional as F
    from segment_anything.modeling.mask_decoder import MaskDecoder

    from pns_mmdet.models.inference import (make_tiles, pad_to_size,
                                            part_input, points_in_tiles)
    from pns_mmdet.models.utils import build_point_prompts
    seg = model.segmentor
    size = seg.img_size
    img = part_input(img, seg)
    decoder = model.tiled_decoder()
    tiles = make_tiles(img.shape[-2:], size, size - decoder.tile_overlap)
    inside = points_in_tiles(points, tiles)
    count = 0
    for t, (x1, y1, x2, y2) in enumerate(tiles.tolist()):
        idx = torch.nonzero(inside[:, t]).flatten()
        if idx.numel() == 0:
            continue
        tile = pad_to_size(img[:, y1:y2, x1:x2], (size, size))[None]
        emb = encoder(tile)
        local = points[idx] - points.new_tensor([x1, y1])
        coords, labels = build_point_prompts(local,
                                             decoder.num_neg_prompts)
        sparse, dense = seg.prompt_encoder(
            points=(coords, labels), boxes=None, masks=None)
        low, _ = MaskDecoder.forward(seg.mask_decoder, emb,
                                     seg.prompt_encoder.get_dense_pe(),
                                     sparse, dense, False)
        masks = F.interpolate(
            low, (size, size), mode='bilinear', align_corners=False) > 0
        count += len(masks)
    return count


def run_single(spec: dict) -> dict:
    import torch
    from mmengine.structures import InstanceData

    from pns_mmdet.utils.autocast import autocast_context
    if spec['threads']:
        torch.set_num_threads(spec['threads'])
    device = torch.device(spec['device'])
    size = spec['size']
    num_prompts = (
        spec['prompts_256'] if size == 256 else round(
            spec['nuclei_1000'] * size * size / 1e6))
    if spec.get('real_tile'):
        image, points, labels = real_case(spec['real_tile'])
    else:
        image, points, labels = synthetic_case(size, num_prompts)
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model, cfg = build(spec['config'], spec['segmentor'], spec['dtype'],
                       spec['device'], spec['overrides'])
    plain = (plain_reference_encoder(
        model, cfg.model.segmentor.image_encoder.to_dict())
             if spec['upstream'] else None)
    img = torch.from_numpy(image).permute(2, 0, 1).float().to(device)
    prompts = InstanceData(points=points.to(device), labels=labels.to(device))

    def autocast():
        return autocast_context(spec['dtype'], device)

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    def stage_prompter():
        with autocast():
            return model.predict_points(img)

    def stage_segmentor():
        with autocast():
            return model.segment_points(img, prompts, with_masks=False)

    def stage_end2end():
        with autocast():
            model.predict_points(img)
            return model.segment_points(img, prompts, with_masks=False)

    def stage_upstream():
        with autocast():
            return upstream_style_segmentor(model, img, prompts.points,
                                            plain)

    stages = [('prompter', stage_prompter), ('segmentor', stage_segmentor),
              ('end2end', stage_end2end)]
    if spec['upstream']:
        stages.append(('upstream', stage_upstream))
    results = {}
    out = None
    with torch.inference_mode():
        for name, fn in stages:
            if device.type == 'cuda':
                torch.cuda.reset_peak_memory_stats(device)
            walls, cpus = [], []
            for i in range(spec['warmup'] + spec['runs']):
                sync()
                w0, c0 = time.perf_counter(), time.process_time()
                res = fn()
                sync()
                if i >= spec['warmup']:
                    walls.append(time.perf_counter() - w0)
                    cpus.append(time.process_time() - c0)
            peak = (torch.cuda.max_memory_allocated(device) / 2**20
                    if device.type == 'cuda' else
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss /
                    1024)
            results[name] = dict(
                wall=statistics.median(walls),
                cpu=statistics.median(cpus) / torch.get_num_threads(),
                peak_mb=peak)
            if name == 'segmentor':
                out = res
        check = None
        if spec['check']:
            model.test_cfg.update(decode_policy='all', encode_batch=1)
            ref = model.segment_points(img, prompts, with_masks=False)
            check = agreement(ref[1].cpu().numpy(), out[1].cpu().numpy())
    return dict(
        spec=spec,
        stages=results,
        num_prompts=len(points),
        num_instances=len(out[0]),
        tiles=int(model.segmentor.img_size),
        threads=torch.get_num_threads(),
        rss_start_mb=rss_start / 1024,
        check=check)


def parse_overrides(items) -> dict:
    import ast
    out = {}
    for item in items:
        key, _, value = item.partition('=')
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.single:
        print(json.dumps(run_single(json.loads(args.single))))
        return 0
    import torch

    from pns_mmdet.utils.autocast import native_bfloat16
    if args.real_tile:
        if not osp.isfile(args.real_tile):
            print(f'--real-tile {args.real_tile}: no such file (the real '
                  'tiles live in ../shared/data; skipped)')
            return 1
        from pns_mmdet.datasets.io import load_image
        args.sizes = [max(load_image(args.real_tile).shape[:2])]
    devices = args.devices or (['cpu', 'cuda']
                               if torch.cuda.is_available() else ['cpu'])
    overrides = parse_overrides(args.cfg_options)
    load = (open('/proc/loadavg').read().split()[0]
            if osp.isfile('/proc/loadavg') else '?')
    cpu_model = '?'
    if osp.isfile('/proc/cpuinfo'):
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                cpu_model = line.split(':', 1)[1].strip()
                break
    print(f'{args.config}: {args.runs} runs (+{args.warmup} warm-up), '
          f'median; CPU {cpu_model} (native bf16: '
          f'{native_bfloat16(torch.device("cpu"))}); threads '
          f'{args.threads or torch.get_num_threads()}; load average {load}'
          + (f'; test_cfg {overrides}' if overrides else '')
          + (f'; real tile {args.real_tile} (GT prompts)'
             if args.real_tile else '; synthetic tiles'))
    header = (f'{"device":<7}{"segmentor":<11}{"dtype":<6}{"size":>5}'
              f'{"prompts":>8}  {"stage":<10}{"s/img":>8}{"cpu s":>8}'
              f'{"img/s":>8}{"peak MB":>9}  output / agreement')
    print(header)
    for device in devices:
        for segmentor in args.segmentors:
            for dtype in args.dtypes:
                if (dtype == 'bf16' and device == 'cpu'
                        and not native_bfloat16(torch.device('cpu'))
                        and not args.force_bf16):
                    print(f'{device:<7}{segmentor:<11}{dtype:<6}  skipped: '
                          'this CPU has no native bfloat16 (AVX512-BF16 or '
                          'AMX), where it runs tens of times slower than '
                          'fp32 (--force-bf16 to time it anyway)')
                    continue
                for size in args.sizes:
                    spec = dict(
                        config=args.config,
                        segmentor=segmentor,
                        dtype=dtype,
                        size=size,
                        device=device,
                        runs=args.runs,
                        warmup=args.warmup,
                        threads=args.threads,
                        prompts_256=args.prompts_256,
                        nuclei_1000=args.nuclei_1000,
                        check=not args.no_check,
                        upstream=args.upstream,
                        real_tile=args.real_tile,
                        overrides=overrides)
                    proc = subprocess.run(
                        [sys.executable, __file__, args.config, '--single',
                         json.dumps(spec)],
                        capture_output=True,
                        text=True,
                        cwd=REPO)
                    if proc.returncode:
                        sys.stderr.write(proc.stderr[-3000:])
                        print(f'{device:<7}{segmentor:<11}{dtype:<6}'
                              f'{size:>5}  failed')
                        continue
                    res = json.loads(proc.stdout.strip().splitlines()[-1])
                    chk = res['check']
                    for stage, r in res['stages'].items():
                        agree = ''
                        if stage == 'upstream':
                            seg = res['stages']['segmentor']['wall']
                            agree = (f'authors\' segmentor work; ours is '
                                     f'{r["wall"] / seg:.2f}x faster')
                        if stage == 'segmentor':
                            agree = f'{res["num_instances"]} nuclei'
                            if chk is not None:
                                agree += (f'; vs reference {chk[0]:.3f} '
                                          f'matched, mean IoU {chk[1]:.3f}')
                        print(f'{device:<7}{segmentor:<11}{dtype:<6}'
                              f'{size:>5}{res["num_prompts"]:>8}  '
                              f'{stage:<10}{r["wall"]:>8.3f}{r["cpu"]:>8.3f}'
                              f'{1 / r["wall"]:>8.2f}{r["peak_mb"]:>9.0f}  '
                              f'{agree}')
                    sys.stdout.flush()
    print('reference (authors\' code, SAM-B fp32, measured on the 2-core '
          'CPU of the project\'s issue; CPUs differ, --upstream times their '
          'segmentor work here): end to end 0.90 s / 256 tile, 16.4 s / '
          '1000 x 1000 image; target <= 0.45 s and <= 8 s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
