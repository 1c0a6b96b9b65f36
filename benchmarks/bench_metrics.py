"""Seconds per 1000x1000 image of the instance metrics on MoNuSeg maps.

Predictions are the GT maps perturbed like a real model's output (1 px
erosion, a small shift, 10% dropped and ~5% merged nuclei). Prints the
median time per image of AJI, AJI+ and PQ (DQ, SQ, PQ) each computed on its
own, of all five together from one overlap count (`instance_metrics`, what
the metric classes use), and of painting the prediction from a mask stack.

Usage (from the repo root, venv active):
    python benchmarks/bench_metrics.py [--repeat 5] \
        [--data ../shared/data/monuseg2018_test/inst_masks]
"""
import argparse
import glob
import os.path as osp
import time

import numpy as np
from PIL import Image

from pns_mmdet.evaluation.functional import (aji, aji_plus, instance_metrics,
                                             paint_instance_masks, pq)


def perturb(inst: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = inst.copy()
    pad = np.pad(inst, 1, mode='edge')
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        out[pad[dy:dy + inst.shape[0], dx:dx + inst.shape[1]] != inst] = 0
    out = np.roll(out, (2, -3), axis=(0, 1))
    ids = np.unique(out)[1:]
    out[np.isin(out, rng.choice(ids, len(ids) // 10, replace=False))] = 0
    ids = np.unique(out)[1:]
    for a, b in rng.choice(ids, (len(ids) // 20, 2), replace=False):
        out[out == b] = a
    return out


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data',
                        default='../shared/data/monuseg2018_test/inst_masks',
                        help='folder of 16-bit PNG instance maps')
    parser.add_argument('--repeat', type=int, default=5)
    args = parser.parse_args()
    files = sorted(glob.glob(osp.join(args.data, '*.png')))
    if not files:
        raise SystemExit(f'no PNG instance maps in {args.data}')
    rng = np.random.default_rng(0)
    pairs = []
    for f in files:
        gt = np.array(Image.open(f)).astype(np.int32)
        pairs.append((gt, perturb(gt, rng)))
    instance_metrics(*pairs[0])  # warm-up (imports, caches)

    timers = dict(aji=lambda t, p: aji(t, p),
                  aji_plus=lambda t, p: aji_plus(t, p),
                  pq_dq_sq=lambda t, p: pq(t, p),
                  all_five=lambda t, p: instance_metrics(t, p))
    per_metric = {k: [] for k in timers}
    paint = []
    pq_values = []
    for gt, pred in pairs:
        for name, fn in timers.items():
            per_metric[name].append(
                median_time(lambda: fn(gt, pred), args.repeat))
        ids = np.unique(pred)[1:]
        masks = pred[None] == ids[:, None, None]
        scores = rng.random(len(ids))
        paint.append(
            median_time(
                lambda: paint_instance_masks(masks, np.argsort(scores)),
                args.repeat))
        pq_values.append(instance_metrics(gt, pred)['pq'])

    shape = pairs[0][0].shape
    n_gt = np.mean([len(np.unique(g)) - 1 for g, _ in pairs])
    print(f'{len(pairs)} MoNuSeg maps {shape[0]}x{shape[1]}, '
          f'{n_gt:.0f} GT nuclei/image on average, perturbed predictions '
          f'(mean PQ {np.mean(pq_values):.3f}); median of {args.repeat} runs')
    print(f'{"metric":<34}{"s/image mean":>14}{"max":>10}')
    labels = dict(aji='AJI (alone)',
                  aji_plus='AJI+ (alone)',
                  pq_dq_sq='PQ with DQ, SQ (alone)',
                  all_five='AJI+AJI++DQ+SQ+PQ (one pass)')
    for name, values in per_metric.items():
        print(f'{labels[name]:<34}{np.mean(values):>14.4f}'
              f'{np.max(values):>10.4f}')
    separate = sum(
        np.mean(v) for k, v in per_metric.items() if k != 'all_five')
    print(f'{"sum of the three separate calls":<34}{separate:>14.4f}')
    print(f'{"paint pred masks (N,H,W) -> map":<34}{np.mean(paint):>14.4f}'
          f'{np.max(paint):>10.4f}')


if __name__ == '__main__':
    main()
