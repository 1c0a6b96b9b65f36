"""A real-tissue PromptNucSeg model on a CPU in one command (make kumar-cpu).

The CPU recipe of README "Train on your own data on a CPU" on the real H&E
tiles in ../shared/data (docs/accuracy.md has the measured numbers):

1. convert MoNuSeg 2018 test + CPM-15 train (train split) and the 7 tiles of
   the MoNuSeg training release (val split, never trained on) into
   data/kumar_cpu (unless already there),
2. train the LiteMedSAM segmentor (configs/cpu/segmentor_litemedsam_kumar.py),
3. train the TinyViT prompter (configs/cpu/prompter_tinyvit_kumar.py),
4. test the segmentor with oracle prompts (true centroids) and the end-to-end
   model (configs/cpu/promptnucseg_tinyvit_kumar.py) on the val tiles and
   print both metric tables.

Each step is a plain command of the repo's tools (printed before it runs).
Killed runs resume from their last crash-safe checkpoint; finished parts
(work_dirs/kumar_cpu/{segmentor,prompter}.pth) are reused unless --retrain.
Each output has a recipe stamp (data/kumar_cpu/recipe.json,
<weights>.recipe.json): data or weights made by another recipe (other
sources, an edited config) stop the run with a message instead of being
reused silently.

Usage: python tools/kumar_cpu.py [--shared-data ../shared/data] [--retrain]
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from demo import (REPO, format_metric_table,  # noqa: E402
                  latest_test_metrics, require_stamp, run, train_part,
                  write_stamp)

SEGMENTOR_CFG = 'configs/cpu/segmentor_litemedsam_kumar.py'
PROMPTER_CFG = 'configs/cpu/prompter_tinyvit_kumar.py'
E2E_CFG = 'configs/cpu/promptnucseg_tinyvit_kumar.py'
DATA_ROOT = 'data/kumar_cpu'
#: (folder under --shared-data, split, extra converter arguments); the
#: train split appends. CPM-15 image01-07 are 20x (its SOURCE.md): they are
#: enlarged 2x so every tile is at the 40x of the val tiles.
SOURCES = (('monuseg2018_test', 'train', ()),
           ('cpm15_train', 'train', ('--exclude', 'image0[1-7]')),
           ('cpm15_train', 'train', ('--include', 'image0[1-7]', '--scale',
                                     '2')),
           ('monuseg2018_train_extra', 'val', ()))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--shared-data', default=osp.join('..', 'shared', 'data'),
                   help='folder holding the three source datasets')
    p.add_argument('--work-dir', default='work_dirs/kumar_cpu')
    p.add_argument('--retrain', action='store_true',
                   help='train both parts again even if their weights exist')
    p.add_argument('--skip-test', action='store_true',
                   help='train only (no validation tables)')
    return p.parse_args(argv)


def data_recipe() -> dict:
    """What the converted data depends on (kept in its stamp file)."""
    return dict(sources=[[folder, split, list(extra)]
                         for folder, split, extra in SOURCES])


def data_stamp_path() -> str:
    return osp.join(DATA_ROOT, 'recipe.json')


def convert(shared: str) -> None:
    """Step 1: the COCO root of the recipe (train + val splits).

    Reused when both splits exist and its stamp records this recipe's
    sources; a folder converted otherwise (an older recipe) stops the run
    instead of being trained on silently."""
    anns = [osp.join(DATA_ROOT, 'annotations', f'{s}.json')
            for s in ('train', 'val')]
    if all(osp.isfile(a) for a in anns):
        require_stamp(data_stamp_path(), data_recipe(),
                      f'the converted data in {DATA_ROOT}',
                      f'remove {DATA_ROOT} to convert it again')
        print(f'[kumar-cpu] reusing the converted data in {DATA_ROOT}')
        return
    written = set()
    for folder, split, extra in SOURCES:
        src = osp.join(shared, folder)
        for sub in ('images', 'inst_masks'):
            if not osp.isdir(osp.join(src, sub)):
                raise SystemExit(
                    f'[kumar-cpu] {osp.join(src, sub)} is missing: point '
                    '--shared-data at the folder with monuseg2018_test, '
                    'cpm15_train and monuseg2018_train_extra')
        cmd = [sys.executable, 'tools/dataset_converters/generic.py',
               osp.join(src, 'images'), osp.join(src, 'inst_masks'),
               DATA_ROOT, '--split', split, *extra]
        if split in written:
            cmd.append('--append')
        written.add(split)
        run(cmd)
    write_stamp(data_stamp_path(), data_recipe())


def train(name: str, config: str, work_dir: str, retrain: bool) -> str:
    """Steps 2-3: train one part (resuming a killed run), return its
    final weights. They are reused only if made by the same config from
    the same converted data (the data's recipe is part of theirs)."""
    out_ckpt = osp.join(work_dir, f'{name}.pth')
    train_part(name, config, out_ckpt, work_dir, None, [], retrain,
               resume=True, inputs=dict(data=data_recipe()))
    return out_ckpt


def main(argv=None) -> int:
    args = parse_args(argv)
    os.chdir(REPO)
    os.makedirs(args.work_dir, exist_ok=True)
    convert(args.shared_data)
    segmentor = train('segmentor', SEGMENTOR_CFG, args.work_dir,
                      args.retrain)
    prompter = train('prompter', PROMPTER_CFG, args.work_dir, args.retrain)
    if args.skip_test:
        return 0
    oracle_dir = osp.join(args.work_dir, 'test_oracle')
    e2e_dir = osp.join(args.work_dir, 'test_e2e')
    run([sys.executable, 'tools/test.py', SEGMENTOR_CFG, segmentor,
         '--work-dir', oracle_dir])
    run([sys.executable, 'tools/test.py', E2E_CFG, '--work-dir', e2e_dir,
         '--cfg-options', f'model.prompter_checkpoint={prompter}',
         f'model.segmentor_checkpoint={segmentor}'])
    print('\n[kumar-cpu] segmentor with oracle prompts (true centroids), '
          '7 val tiles:')
    print(format_metric_table(latest_test_metrics(oracle_dir)))
    print('[kumar-cpu] end to end (TinyViT prompter + segmentor), 7 val '
          'tiles:')
    print(format_metric_table(latest_test_metrics(e2e_dir)))
    print(f'[kumar-cpu] weights: {prompter}, {segmentor}; use them with '
          f'tools/infer.py {E2E_CFG} <images> --prompter-checkpoint '
          f'{prompter} --segmentor-checkpoint {segmentor}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
