"""Prompter inference time and peak memory on CPU.

Times ``NucleusPrompter`` data preprocessing + forward + point
post-processing (softmax, clipping, mask-aided filtering when on, point NMS,
rescaling) for one image per call, with random weights (speed does not
depend on them):

- PanNuke settings (256 x 256, anchor stride 8, P2-P4) and Kumar settings
  (1000 x 1000 padded to 1008, stride 16, P2-P5, mask filtering on),
- ConvNeXt-S (configs/prompter_{pannuke,kumar}.py) and ResNet-50
  (the same with the backbone of configs/prompter_pannuke_r50.py).

Each setting runs in its own subprocess so that its peak resident memory
(``ru_maxrss``) is its own. Usage, from the repository root::

    python benchmarks/bench_prompter.py              # all four settings
    python benchmarks/bench_prompter.py --runs 3 --threads 2
    python benchmarks/bench_prompter.py --channels-last --compare-upstream

``--compare-upstream`` alternates each timed call with an upstream-style
pass of the same network (mask head always on, NumPy post-processing with
the dense-matrix NMS loop), so the ratio holds even on a busy machine.

Reference (upstream code, this 2-core machine): 0.20 s per 256 x 256 tile
(PanNuke, ConvNeXt-S, 21.7 GMACs) and 3.3 s per 1000 x 1000 image (Kumar).
"""
import argparse
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SETTINGS = {
    'convnext-s_256': ('configs/prompter_pannuke.py', None, 256),
    'convnext-s_1000': ('configs/prompter_kumar.py', None, 1000),
    'r50_256': ('configs/prompter_pannuke.py',
                'configs/prompter_pannuke_r50.py', 256),
    'r50_1000': ('configs/prompter_kumar.py',
                 'configs/prompter_pannuke_r50.py', 1000),
}


def build_model(config: str,
                backbone_from: str,
                channels_last: bool = False):
    """Model of ``config`` (random weights), optionally with the backbone
    and neck input channels of ``backbone_from``."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(osp.join(REPO, config))
    init_default_scope('mmdet')
    import pns_mmdet  # noqa: F401
    from mmdet.registry import MODELS
    model_cfg = cfg.model
    if backbone_from is not None:
        other = Config.fromfile(osp.join(REPO, backbone_from)).model
        model_cfg.backbone = other.backbone
        model_cfg.neck.in_channels = other.neck.in_channels
        if isinstance(model_cfg.aux_mask_head.get('in_channels'), list):
            model_cfg.aux_mask_head.in_channels = other.neck.in_channels
    model_cfg.backbone.init_cfg = None
    if 'checkpoint' in model_cfg.backbone:
        model_cfg.backbone.checkpoint = None
    model_cfg.channels_last = channels_last
    return MODELS.build(model_cfg).eval()


def gmacs(model, size: int) -> float:
    """Multiply-accumulates of the network forward (backbone to heads)."""
    import torch
    from mmengine.analysis import FlopAnalyzer
    stride = model.stride
    padded = -(-size // stride) * stride
    x = torch.zeros(1, 3, padded, padded)
    # fvcore-style counts one fused multiply-add as one flop (= one MAC).
    analyzer = FlopAnalyzer(model, (x, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer.total() / 1e9


def upstream_like_pass(model, img, size: int):
    """The same network run the way upstream's ``predict`` does it.

    Upstream always computes the auxiliary mask, upsamples its logits to the
    padded input (``align_corners=True``), then post-processes on NumPy:
    softmax, clipping, background removal, optional mask filtering and the
    greedy NMS loop over a dense distance matrix. Timed alternately with our
    ``predict`` so that both see the same machine load.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F
    from scipy.spatial import distance_matrix
    stride = model.stride
    pad = -(-size // stride) * stride
    x = torch.zeros(1, 3, pad, pad)
    x[..., :size, :size] = (img.float() - 127.5) / 58.0
    feats, neck = model._extract_feats(x)
    cls_scores, point_preds = model.bbox_head(neck)
    mask = F.interpolate(
        model.aux_mask_head(feats), size=(pad, pad), mode='bilinear',
        align_corners=True)[0, 0].cpu().numpy() > 0
    points = point_preds.reshape(-1, 2).cpu().numpy()
    probs = cls_scores.reshape(-1, cls_scores.shape[-1]).softmax(-1).numpy()
    classes = probs.argmax(-1)
    np.clip(points, 0, size - 1, out=points)
    valid = classes < probs.shape[-1] - 1
    points, scores = points[valid], probs[valid].max(1)
    if model.mask_filter:
        inside = mask[points.astype(int)[:, 1], points.astype(int)[:, 0]]
        points, scores = points[inside], scores[inside]
    keep = np.ones(len(points), dtype=bool)
    if len(points):
        dist = distance_matrix(points, points)
        np.fill_diagonal(dist, np.inf)
        for idx in np.argsort(-scores):
            if keep[idx]:
                keep[dist[idx] <= model.test_cfg['nms_radius']] = False
    return points[keep]


def run_single(name: str, runs: int, warmup: int, threads: int,
               channels_last: bool, compare_upstream: bool) -> dict:
    import torch
    from mmdet.structures import DetDataSample
    torch.set_num_threads(threads)
    config, backbone_from, size = SETTINGS[name]
    model = build_model(config, backbone_from, channels_last)
    gen = torch.Generator().manual_seed(0)
    img = torch.randint(
        0, 256, (3, size, size), generator=gen, dtype=torch.uint8)

    def once():
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                scale_factor=(1., 1.)))
        data = model.data_preprocessor(
            dict(inputs=[img], data_samples=[sample]), False)
        return model.predict(data['inputs'], data['data_samples'])

    def upstream():
        start = time.perf_counter()
        upstream_like_pass(model, img, size)
        return time.perf_counter() - start

    times, cpu_times, up_times, ratios = [], [], [], []
    with torch.inference_mode():
        for i in range(warmup + runs):
            # Alternate which pass goes first, so neither always runs on a
            # warm (or cold) cache.
            up_first = compare_upstream and i % 2 == 1
            up_time = upstream() if up_first else None
            start, cpu_start = time.perf_counter(), time.process_time()
            out = once()
            wall = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            if compare_upstream and not up_first:
                up_time = upstream()
            if i >= warmup:
                times.append(wall)
                cpu_times.append(cpu)
                if compare_upstream:
                    up_times.append(up_time)
                    ratios.append(wall / up_time)
        macs = gmacs(model, size) if size == 256 else None
    return dict(
        setting=name,
        config=config,
        backbone=backbone_from or config,
        size=size,
        mask_filter=model.mask_filter,
        num_points=len(out[0].pred_instances),
        median_s=statistics.median(times),
        min_s=min(times),
        cpu_s=statistics.median(cpu_times),
        upstream_like_s=statistics.median(up_times) if up_times else None,
        ratio=statistics.median(ratios) if ratios else None,
        gmacs=macs,
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss /
        1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument(
        '--channels-last', action='store_true',
        help='build the models with channels_last=True')
    parser.add_argument(
        '--settings', nargs='+', default=list(SETTINGS),
        choices=list(SETTINGS))
    parser.add_argument(
        '--compare-upstream', action='store_true',
        help='also time an upstream-style pass of the same network '
        '(always-on mask head, NumPy post-processing), alternating with '
        'ours, and print the ratio')
    parser.add_argument('--single', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        print(json.dumps(run_single(args.single, args.runs, args.warmup,
                                    args.threads, args.channels_last,
                                    args.compare_upstream)))
        return
    print(f'torch threads: {args.threads}, runs: {args.runs} '
          f'(+{args.warmup} warm-up), batch 1, random weights, '
          f'load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs')
    # Wall-clock times depend on what else runs on the machine; the CPU
    # time of the process (all threads) is less sensitive to it.
    header = (f'{"setting":<16}{"median s":>10}{"min s":>9}{"CPU s":>8}'
              f'{"GMACs":>8}{"params M":>10}{"peak RSS MB":>13}'
              '  mask filter')
    print(header)
    for name in args.settings:
        cmd = [
            sys.executable, __file__, '--single', name, '--runs',
            str(args.runs), '--warmup', str(args.warmup), '--threads',
            str(args.threads)
        ] + (['--channels-last'] if args.channels_last else []) + (
            ['--compare-upstream'] if args.compare_upstream else [])
        proc = subprocess.run(
            cmd, capture_output=True, text=True, cwd=REPO)
        if proc.returncode:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f'{name} failed')
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        macs = f'{res["gmacs"]:.1f}' if res['gmacs'] else '-'
        print(f'{name:<16}{res["median_s"]:>10.3f}{res["min_s"]:>9.3f}'
              f'{res["cpu_s"]:>8.2f}{macs:>8}{res["params_m"]:>10.1f}'
              f'{res["peak_rss_mb"]:>13.0f}  {res["mask_filter"]}')
        if res['upstream_like_s']:
            print(f'{"":<16}upstream-style pass of the same network: '
                  f'{res["upstream_like_s"]:.3f} s (median); median of the '
                  f'paired ratios ours / upstream-style: {res["ratio"]:.2f}')
    print('reference (upstream code, same machine): 0.20 s / 256x256 tile '
          '(ConvNeXt-S, PanNuke), 3.3 s / 1000x1000 image (Kumar)')


if __name__ == '__main__':
    main()
