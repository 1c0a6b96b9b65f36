"""Evaluate saved nucleus instance maps against GT maps.

Both folders hold one instance map per image (16-bit PNG, TIFF, .npy, .npz
or .mat with key ``inst_map``), matched by file stem. Prints a per-image
table and the means (HoVer-Net AJI, AJI+, DQ, SQ, PQ; see
docs/evaluation.md) and optionally writes them as JSON.

The output folder of tools/infer.py is read as it is: its instance maps are
``<stem>_inst.png`` and its class maps ``<stem>_class.png`` (beside
overlays and GeoJSON), so by default (``--pred-suffix auto``) a prediction
folder holding ``*_inst`` maps is matched on ``<stem>_inst`` and its other
files are ignored; likewise ``*_class`` maps for ``--pred-classes``.

Examples:
    python tools/infer.py configs/promptnucseg_kumar.py tiles/ \
        --out-dir work_dirs/infer
    python tools/evaluate.py --gt tiles_gt/ \
        --pred work_dirs/infer --radius 12
    python tools/evaluate.py --gt ../shared/data/monuseg2018_test/inst_masks \
        --pred ../shared/data/monuseg2018_test/inst_masks --out metrics.json
    python tools/evaluate.py --gt gt/inst --pred pred/inst \
        --gt-classes gt/cls --pred-classes pred/cls \
        --class-names Neoplastic Inflammatory Connective Dead Epithelial \
        --tissues tissues.json --radius 12
"""
import argparse
import json
import math
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.utils import ProgressBar
from terminaltables import AsciiTable

from pns_mmdet.datasets.io import load_instance_map
from pns_mmdet.evaluation.functional import (INSTANCE_KEYS, detection_scores,
                                             image_instance_stats,
                                             pair_coordinates,
                                             summarize_instance_stats)
from pns_mmdet.utils import atomic_write, check_writable_dir

MAP_EXTS = ('.png', '.tif', '.tiff', '.npy', '.npz', '.mat')
# File name suffixes of tools/infer.py's maps, which --pred-suffix auto and
# --pred-class-suffix auto recognise.
INFER_INST_SUFFIX = '_inst'
INFER_CLASS_SUFFIX = '_class'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='AJI, AJI+, DQ, SQ, PQ (and bPQ/mPQ with class maps) of '
        'predicted instance maps against GT instance maps, matched by file '
        'stem.')
    parser.add_argument('--gt', required=True, help='folder of GT maps')
    parser.add_argument('--pred',
                        required=True,
                        help='folder of predicted maps')
    parser.add_argument(
        '--pred-suffix',
        default='auto',
        help='prediction maps are <stem><SUFFIX>.<ext> (other files in '
        '--pred are ignored); "auto" (default): "_inst" when --pred holds '
        '*_inst maps (tools/infer.py output), else "" (exact stems)')
    parser.add_argument('--out', help='write the results as JSON here')
    parser.add_argument('--match-iou',
                        type=float,
                        default=0.5,
                        help='PQ matching IoU threshold (strict >)')
    parser.add_argument('--gt-classes',
                        help='folder of GT class maps (1..C, 0 background)')
    parser.add_argument('--pred-classes',
                        help='folder of predicted class maps (1..C)')
    parser.add_argument(
        '--pred-class-suffix',
        default='auto',
        help='predicted class maps are <stem><SUFFIX>.<ext>; "auto" '
        '(default): "_class" when --pred-classes holds *_class maps '
        '(tools/infer.py output), else ""')
    parser.add_argument('--class-names',
                        nargs='+',
                        help='names of classes 1..C (needed with class maps)')
    parser.add_argument('--tissues',
                        help='JSON {stem: tissue} for the PanNuke per-tissue '
                        'mean; default: all images form one group')
    parser.add_argument('--radius',
                        type=float,
                        help='also report detection P/R/F1 of instance '
                        'centroids matched within this radius (px)')
    args = parser.parse_args(argv)
    with_cls = [args.gt_classes, args.pred_classes, args.class_names]
    if any(with_cls) and not all(with_cls):
        parser.error('--gt-classes, --pred-classes and --class-names go '
                     'together')
    if not 0 <= args.match_iou < 1:
        parser.error(f'--match-iou must be in [0, 1), got {args.match_iou}')
    return args


def _map_stems(folder: str, what: str) -> List[Tuple[str, str]]:
    """(file stem, file name) of every map file in ``folder``."""
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{what} folder not found: {folder}')
    return [(osp.splitext(name)[0], name)
            for name in sorted(os.listdir(folder))
            if osp.splitext(name)[1].lower() in MAP_EXTS]


def resolve_suffix(folder: str, suffix: str, infer_suffix: str,
                   what: str) -> str:
    """The file name suffix of the maps in ``folder``.

    ``'auto'`` becomes ``infer_suffix`` (tools/infer.py's ``_inst`` or
    ``_class``) when some map's stem ends with it, else ``''``; any other
    value is returned unchanged.
    """
    if suffix != 'auto':
        return suffix
    return infer_suffix if any(
        stem.endswith(infer_suffix) and stem != infer_suffix
        for stem, _ in _map_stems(folder, what)) else ''


def list_maps(folder: str, what: str, suffix: str = '') -> Dict[str, str]:
    """Map image stem -> path of every instance map file in ``folder``.

    Args:
        folder (str): Folder of map files (not recursive).
        what (str): Its role, for error messages.
        suffix (str): Files are ``<stem><suffix>.<ext>``; with a suffix,
            map files whose stem lacks it (e.g. tools/infer.py's
            ``_class`` / ``_overlay`` PNGs beside ``_inst``) are ignored.
    """
    found: Dict[str, List[str]] = {}
    for stem, name in _map_stems(folder, what):
        if suffix:
            if not stem.endswith(suffix) or stem == suffix:
                continue
            stem = stem[:-len(suffix)]
        found.setdefault(stem, []).append(osp.join(folder, name))
    dups = {s: p for s, p in found.items() if len(p) > 1}
    if dups:
        raise ValueError(f'{what} folder {folder} has several maps with the '
                         f'same stem: {dups}')
    if not found:
        named = f' named <stem>{suffix}.<ext>' if suffix else ''
        raise ValueError(f'{what} folder {folder} has no instance maps'
                         f'{named} ({", ".join(MAP_EXTS)})')
    return {s: p[0] for s, p in found.items()}


def match_stems(gt: Dict[str, str],
                pred: Dict[str, str],
                gt_dir: str,
                pred_dir: str,
                pred_suffix: Optional[str] = None,
                suffix_option: str = '--pred-suffix') -> List[str]:
    """Sorted common stems; error listing every unmatched stem (and, given
    ``pred_suffix``, the suffix the prediction files were read with)."""
    only_gt = sorted(set(gt) - set(pred))
    only_pred = sorted(set(pred) - set(gt))
    if only_gt or only_pred:
        msg = []
        if only_gt:
            msg.append(f'{len(only_gt)} GT map(s) without prediction in '
                       f'{pred_dir}: {only_gt}')
        if only_pred:
            msg.append(f'{len(only_pred)} prediction(s) without GT map in '
                       f'{gt_dir}: {only_pred}')
        if pred_suffix is not None:
            msg.append(f'files of {pred_dir} read as <stem>{pred_suffix}'
                       f'.<ext> ({suffix_option} {pred_suffix!r}; pass '
                       f'{suffix_option} to choose another)')
        raise ValueError('unmatched file stems; ' + '; '.join(msg))
    return sorted(gt)


def centroids(inst_map: np.ndarray) -> np.ndarray:
    """(K, 2) x, y pixel-mean centroid of every instance (ascending id)."""
    flat = inst_map.ravel()
    fg = np.flatnonzero(flat)
    ids, idx = np.unique(flat[fg], return_inverse=True)
    ys, xs = np.divmod(fg, inst_map.shape[1])
    area = np.bincount(idx, minlength=ids.size)
    return np.stack([
        np.bincount(idx, xs, minlength=ids.size) / area,
        np.bincount(idx, ys, minlength=ids.size) / area
    ],
                    axis=1) if ids.size else np.zeros((0, 2))


def _clean(value):
    """JSON-safe value: NaN -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _fmt(value) -> str:
    return 'nan' if value is None or math.isnan(value) else f'{value:.4f}'


def evaluate(args: argparse.Namespace) -> dict:
    """Run the evaluation described by parsed arguments; return the JSON
    layout ``{'per_image': {stem: {...}}, 'mean': {...}, ...}``."""
    gt_maps = list_maps(args.gt, 'GT')
    suffix = resolve_suffix(args.pred, args.pred_suffix, INFER_INST_SUFFIX,
                            'prediction')
    pred_maps = list_maps(args.pred, 'prediction', suffix)
    if suffix and args.pred_suffix == 'auto':
        print(f'prediction maps: <stem>{suffix}.<ext> in {args.pred} '
              '(tools/infer.py layout; other files ignored)',
              file=sys.stderr)
    stems = match_stems(gt_maps, pred_maps, args.gt, args.pred, suffix)
    class_names = args.class_names
    if class_names:
        gt_cls = list_maps(args.gt_classes, 'GT class')
        cls_suffix = resolve_suffix(args.pred_classes,
                                    args.pred_class_suffix,
                                    INFER_CLASS_SUFFIX, 'predicted class')
        pred_cls = list_maps(args.pred_classes, 'predicted class',
                             cls_suffix)
        match_stems(gt_maps, gt_cls, args.gt, args.gt_classes)
        match_stems(pred_maps, pred_cls, args.pred, args.pred_classes,
                    cls_suffix, '--pred-class-suffix')
    tissues = None
    if args.tissues:
        with open(args.tissues) as f:
            tissue_of = json.load(f)
        missing = [s for s in stems if s not in tissue_of]
        if missing:
            raise ValueError(f'{args.tissues} has no tissue for {missing}')
        tissues = [tissue_of[s] for s in stems]

    per_image, stats = {}, []
    det = np.zeros(3, np.int64)  # TP, #pred, #GT
    bar = ProgressBar(len(stems), file=sys.stderr)
    for stem in stems:
        gt = load_instance_map(gt_maps[stem])
        pred = load_instance_map(pred_maps[stem])
        if gt.shape != pred.shape:
            raise ValueError(f'shape mismatch for {stem!r}: GT '
                             f'{gt_maps[stem]} is {gt.shape}, prediction '
                             f'{pred_maps[stem]} is {pred.shape}')
        kwargs = {}
        if class_names:
            kwargs = dict(true_cls=load_instance_map(gt_cls[stem]),
                          pred_cls=load_instance_map(pred_cls[stem]),
                          num_classes=len(class_names))
        try:
            s = image_instance_stats(gt,
                                     pred,
                                     match_iou=args.match_iou,
                                     **kwargs)
        except ValueError as e:
            raise ValueError(f'{stem}: {e}') from e
        stats.append(s)
        row = {k: s[k] for k in INSTANCE_KEYS}
        if class_names:
            row['bpq'] = s['bpq']
            row.update({
                f'pq_{n}': v
                for n, v in zip(class_names, s['class_pq'])
            })
        per_image[stem] = row
        if args.radius:
            t_pts, p_pts = centroids(gt), centroids(pred)
            det += [
                pair_coordinates(t_pts, p_pts, args.radius).tp,
                len(p_pts),
                len(t_pts)
            ]
        bar.update()
    sys.stderr.write('\n')

    mean = summarize_instance_stats(stats, class_names, tissues)
    per_tissue = mean.pop('per_tissue', None)
    out = dict(per_image=per_image, mean=dict(mean))
    if per_tissue is not None:
        out['per_tissue'] = dict(per_tissue)
    if args.radius:
        p, r, f1 = detection_scores(*det)
        out['detection'] = dict(precision=p,
                                recall=r,
                                f1=f1,
                                radius=args.radius,
                                matcher='hungarian',
                                tp=int(det[0]),
                                num_pred=int(det[1]),
                                num_gt=int(det[2]))
    return _clean(out)


def print_tables(out: dict) -> None:
    keys = [k for k in next(iter(out['per_image'].values()))]
    rows = [['image'] + keys]
    for stem, row in out['per_image'].items():
        rows.append([stem] + [_fmt(row[k]) for k in keys])
    rows.append([f"mean ({out['mean']['num_images']} images)"] +
                [_fmt(out['mean'].get(k)) for k in keys])
    print(AsciiTable(rows).table)
    if 'per_tissue' in out:
        rows = [['tissue', 'images', 'bPQ', 'mPQ']]
        for tissue, v in out['per_tissue'].items():
            rows.append(
                [tissue, v['num_images'],
                 _fmt(v['bpq']),
                 _fmt(v['mpq'])])
        rows.append([
            'mean over tissues', out['mean']['num_images'],
            _fmt(out['mean']['bpq']),
            _fmt(out['mean']['mpq'])
        ])
        print(AsciiTable(rows).table)
    if 'detection' in out:
        d = out['detection']
        print(f"centroid detection (radius {d['radius']:g} px): precision "
              f"{_fmt(d['precision'])}, recall {_fmt(d['recall'])}, F1 "
              f"{_fmt(d['f1'])}")


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    if args.out:
        # An unwritable or full output folder fails before the evaluation.
        check_writable_dir(osp.dirname(osp.abspath(args.out)), '--out folder')
    out = evaluate(args)
    print_tables(out)
    if args.out:
        with atomic_write(args.out, 'w') as f:  # never a truncated JSON
            json.dump(out, f, indent=2)
        print(f'results written to {args.out}')
    return out


if __name__ == '__main__':
    try:
        main()
    except (FileNotFoundError, KeyError, ValueError) as e:
        sys.exit(f'error: {e}')
    except OSError as e:  # e.g. unwritable --out folder
        sys.exit(f'error: {e.strerror or e}')
