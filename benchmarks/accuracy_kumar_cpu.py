"""The paper's ablations on real H&E, on the CPU recipe's 7 val tiles.

Runs ``tools/test.py`` once per variant (each in its own work dir, reused
when its metrics exist, so a killed run continues) and prints one markdown
table: point detection P/R/F1 (12 px) and PQ/AJI/DQ/SQ. Needs the weights
of ``tools/kumar_cpu.py`` (``make kumar-cpu``) and, for the ResNet-18 row,
``python tools/train.py configs/cpu/prompter_r18_kumar.py --work-dir
work_dirs/kumar_cpu/prompter_r18`` with its last checkpoint copied to
work_dirs/kumar_cpu/prompter_r18.pth. docs/accuracy.md shows the result.

Variants: the segmentor with oracle prompts (true centroids) with K = 1 and
K = 0 negatives (test-time K; the segmentor was trained with K = 1), the
prompters alone (mask-aided filtering on/off; TinyViT vs ResNet-18), and
the end-to-end model with each of these changes.

Usage: python benchmarks/accuracy_kumar_cpu.py [--only NAME ...] [--rerun]
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
WORK = 'work_dirs/kumar_cpu'
SEG_CFG = 'configs/cpu/segmentor_litemedsam_kumar.py'
PROMPTER_CFG = 'configs/cpu/prompter_tinyvit_kumar.py'
R18_CFG = 'configs/cpu/prompter_r18_kumar.py'
E2E_CFG = 'configs/cpu/promptnucseg_tinyvit_kumar.py'
E2E_R18_CFG = 'configs/cpu/promptnucseg_r18_kumar.py'
SEG = f'{WORK}/segmentor.pth'
#: name -> (config, checkpoint or None, --cfg-options)
VARIANTS: Dict[str, tuple] = {
    'oracle, K=1': (SEG_CFG, SEG, []),
    'oracle, K=0': (SEG_CFG, SEG, ['model.test_cfg.num_neg_prompts=0']),
    'prompter TinyViT, filter on': (PROMPTER_CFG, f'{WORK}/prompter.pth',
                                    []),
    'prompter TinyViT, filter off': (PROMPTER_CFG, f'{WORK}/prompter.pth',
                                     ['model.test_cfg.mask_filter=False']),
    'prompter ResNet-18, filter on': (R18_CFG, f'{WORK}/prompter_r18.pth',
                                      []),
    'e2e TinyViT, K=1, filter on': (E2E_CFG, None, []),
    'e2e TinyViT, K=0, filter on': (
        E2E_CFG, None, ['model.test_cfg.num_neg_prompts=0']),
    # upstream's test-time trick: each prompt decoded with and without its
    # negative, the mask with the higher predicted IoU kept
    'e2e TinyViT, K=1 and K=0, best IoU': (
        E2E_CFG, None, ['model.test_cfg.neg_prompts_both=True']),
    'e2e TinyViT, K=1, filter off': (
        E2E_CFG, None, ['model.prompter.test_cfg.mask_filter=False']),
    'e2e ResNet-18, K=1, filter on': (E2E_R18_CFG, None, []),
}
COLUMNS = (('P', 'points/precision'), ('R', 'points/recall'),
           ('F1', 'points/f1'), ('PQ', 'nuclei/pq'), ('AJI', 'nuclei/aji'),
           ('DQ', 'nuclei/dq'), ('SQ', 'nuclei/sq'))


def metrics_of(work_dir: str) -> Optional[dict]:
    """Metrics JSON of the newest test run in ``work_dir``, if any."""
    runs = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    if not runs:
        return None
    with open(runs[-1]) as f:
        return json.load(f)


def run_variant(name: str, rerun: bool) -> dict:
    config, ckpt, options = VARIANTS[name]
    work_dir = osp.join(WORK, 'ablations',
                        name.replace(', ', '_').replace(' ', '_'))
    found = None if rerun else metrics_of(work_dir)
    if found is not None:
        print(f'[ablations] reusing {name}: {work_dir}', flush=True)
        return found
    cmd = [sys.executable, 'tools/test.py', config]
    if ckpt is not None:
        cmd.append(ckpt)
    cmd += ['--work-dir', work_dir]
    if options:
        cmd += ['--cfg-options'] + options
    print('[ablations] $ ' + ' '.join(['python'] + cmd[1:]), flush=True)
    if subprocess.run(cmd, cwd=REPO).returncode:
        raise SystemExit(f'[ablations] {name} failed')
    return metrics_of(work_dir)


def table(results: Dict[str, dict]) -> str:
    head = '| variant | ' + ' | '.join(c for c, _ in COLUMNS) + ' |'
    lines = [head, '|' + '---|' * (len(COLUMNS) + 1)]
    for name, metrics in results.items():
        cells = [f'{metrics[k]:.3f}' if k in metrics else '-'
                 for _, k in COLUMNS]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--only', nargs='+', choices=list(VARIANTS),
                   help='variants to run (default: all)')
    p.add_argument('--rerun', action='store_true',
                   help='test again even where metrics exist')
    args = p.parse_args(argv)
    os.chdir(REPO)
    results = {name: run_variant(name, args.rerun)
               for name in (args.only or VARIANTS)}
    print(table(results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
