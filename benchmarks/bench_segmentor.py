"""Segmentor speed and memory on one 256 x 256 tile with 100 point prompts.

For SAM ViT-B (random weights: same cost as the real ones) and LiteMedSAM
(packaged weights), in float32 and under bfloat16 autocast, prints:

* image-encoder time per tile,
* decoder time per 100 prompts (1 positive + 1 negative point each), for
  this package's shared-image decoder and for segment_anything's own
  ``MaskDecoder.forward`` (which copies the image embedding per prompt),
  both up to the 256 x 256 mask logits,
* peak resident memory of the process over the run, and its increase over
  the built model.

Each case runs in a fresh subprocess so the memory figures do not mix.
Times are medians over ``--runs`` runs after one warm-up run. Run from the
repo root:

    python benchmarks/bench_segmentor.py [--runs 5] [--prompts 100]
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
MODELS = {
    'sam-b': 'configs/_base_/models/segmentor_sam-b.py',
    'litemedsam': 'configs/_base_/models/segmentor_litemedsam.py',
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--models', nargs='+', default=list(MODELS))
    p.add_argument('--dtypes', nargs='+', default=['fp32', 'bf16'])
    p.add_argument('--runs', type=int, default=5)
    p.add_argument('--prompts', type=int, default=100)
    p.add_argument('--threads', type=int, default=None,
                   help='torch threads (default: torch\'s own choice)')
    p.add_argument('--case', default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def peak_rss_mb() -> float:
    # ru_maxrss is in kB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_case(model_name: str, dtype: str, runs: int, num_prompts: int,
             threads) -> dict:
    import torch
    import torch.nn.functional as F
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import pns_mmdet  # noqa: F401  (registers the models)
    from mmdet.registry import MODELS as REGISTRY
    from pns_mmdet.models.utils import build_point_prompts
    if threads:
        torch.set_num_threads(threads)
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(REPO, MODELS[model_name])).model
    if model_name == 'sam-b':
        cfg.checkpoint = None  # random weights, same cost
    model = REGISTRY.build(cfg).eval()
    rss_model = peak_rss_mb()
    torch.manual_seed(0)
    size = model.img_size
    image = torch.randn(1, 3, size, size)
    points = torch.rand(num_prompts, 2) * (size - 1)
    coords, labels = build_point_prompts(points, 1)
    autocast = torch.autocast(
        'cpu', dtype=torch.bfloat16, enabled=dtype == 'bf16')

    with torch.no_grad(), autocast:
        embedding = model.encode_image(image)

        def encode():
            model.encode_image(image)

        def decode_shared():
            model.decode_prompts(embedding, coords, labels,
                                 chunk_size=num_prompts)

        def decode_sam():
            # segment_anything's path: one copy of the embedding per prompt.
            sparse, dense = model.prompt_encoder(
                points=(coords, labels), boxes=None, masks=None)
            low, _ = model.mask_decoder(
                embedding, model.prompt_encoder.get_dense_pe(), sparse,
                dense, multimask_output=False)
            if low.shape[-1] != size:
                F.interpolate(low, (size, size), mode='bilinear',
                              align_corners=False)

        t_enc = median_time(encode, runs)
        t_dec = median_time(decode_shared, runs)
        t_sam = median_time(decode_sam, runs)
    return dict(
        model=model_name,
        dtype=dtype,
        threads=torch.get_num_threads(),
        encoder_s=t_enc,
        decoder_s=t_dec,
        decoder_sam_s=t_sam,
        scale=100 / num_prompts,
        peak_rss_mb=peak_rss_mb(),
        model_rss_mb=rss_model)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.case:
        model_name, dtype = args.case.split(':')
        print(json.dumps(
            run_case(model_name, dtype, args.runs, args.prompts,
                     args.threads)))
        return 0
    print(f'one {256}x{256} tile, {args.prompts} prompts (1 pos + 1 neg), '
          f'median of {args.runs} runs; load average '
          f'{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs')
    header = (f'{"model":<11}{"dtype":<6}{"thr":>4}{"encoder s":>11}'
              f'{"dec/100 s":>11}{"SAM dec/100":>13}{"enc+dec s":>11}'
              f'{"peak MB":>9}{"+run MB":>9}')
    print(header)
    print('-' * len(header))
    import torch

    from pns_mmdet.utils.autocast import native_bfloat16
    for model_name in args.models:
        for dtype in args.dtypes:
            if (dtype == 'bf16'
                    and not native_bfloat16(torch.device('cpu'))):
                print(f'{model_name} bf16: skipped, this CPU has no native '
                      'bfloat16 (AVX512-BF16 or AMX) and would run it tens '
                      'of times slower than fp32')
                continue
            cmd = [
                sys.executable, __file__, '--case', f'{model_name}:{dtype}',
                '--runs', str(args.runs), '--prompts', str(args.prompts)
            ]
            if args.threads:
                cmd += ['--threads', str(args.threads)]
            out = subprocess.run(
                cmd, cwd=REPO, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            dec = r['decoder_s'] * r['scale']
            sam = r['decoder_sam_s'] * r['scale']
            print(f'{model_name:<11}{dtype:<6}{r["threads"]:>4}'
                  f'{r["encoder_s"]:>11.3f}{dec:>11.3f}{sam:>13.3f}'
                  f'{r["encoder_s"] + dec:>11.3f}{r["peak_rss_mb"]:>9.0f}'
                  f'{r["peak_rss_mb"] - r["model_rss_mb"]:>9.0f}',
                  flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
