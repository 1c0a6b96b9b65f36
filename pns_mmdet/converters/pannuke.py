"""PanNuke converter: the three official folds -> COCO layout.

Raw layout per fold k (as downloaded)::

    Fold k/images/foldk/images.npy   (N, 256, 256, 3) float RGB in 0..255
    Fold k/images/foldk/types.npy    (N,) tissue names
    Fold k/masks/foldk/masks.npy     (N, 256, 256, 6): channels 0-4 are
                                     instance-id maps of Neoplastic,
                                     Inflammatory, Connective, Dead,
                                     Epithelial; channel 5 is background

A flat folder holding ``images.npy``, ``masks.npy`` and ``types.npy`` is
accepted as one fold too. Output: ``images/<k>_<j>.png`` (upstream
PromptNucSeg names) and ``annotations/fold<k>.json`` with the tissue name on
every image. The official fold orders (train/val/test) are
``123`` = 1/2/3, ``213`` = 2/1/3 and ``321`` = 3/2/1 (see
:data:`PANNUKE_FOLD_ORDERS` and ``configs/_base_/datasets/pannuke*.py``).

Instances follow upstream's ``extract_data.py``: each channel's ids get
their own range, later channels overwrite earlier ones where they overlap,
and each instance's class is its channel.
"""
import glob
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ..datasets.coco_writer import CocoLayoutWriter
from ..datasets.io import load_npy, to_uint8_rgb

__all__ = [
    'PANNUKE_CLASSES', 'PANNUKE_FOLD_ORDERS', 'find_pannuke_fold',
    'pannuke_masks_to_instance_map', 'convert_pannuke'
]

PANNUKE_CLASSES = ('Neoplastic', 'Inflammatory', 'Connective', 'Dead',
                   'Epithelial')

#: fold order name -> (train fold, val fold, test fold)
PANNUKE_FOLD_ORDERS = {'123': (1, 2, 3), '213': (2, 1, 3), '321': (3, 2, 1)}


def find_pannuke_fold(src: str, fold: int) -> Tuple[str, str, str]:
    """Locate ``images.npy``, ``masks.npy`` and ``types.npy`` of a fold.

    Looks for the official layout (``Fold k/images/foldk/...``), any
    folder named ``Fold k``/``fold k``/``foldk``/``fold_k`` below ``src``
    holding the three files at any depth, or, failing that, the three files
    directly in ``src``.

    Returns:
        tuple: (images, masks, types) paths.

    Raises:
        FileNotFoundError: naming ``src``, the fold and the missing file.
    """
    names = (f'Fold {fold}', f'fold {fold}', f'fold{fold}', f'Fold{fold}',
             f'fold_{fold}', f'Fold_{fold}')
    for n in names:
        base = osp.join(src, n)
        if not osp.isdir(base):
            continue
        found = {}
        for f in ('images.npy', 'masks.npy', 'types.npy'):
            hits = sorted(glob.glob(osp.join(base, '**', f), recursive=True))
            if hits:
                found[f] = hits[0]
        if len(found) == 3:
            return found['images.npy'], found['masks.npy'], found['types.npy']
        missing = {'images.npy', 'masks.npy', 'types.npy'} - set(found)
        raise FileNotFoundError(f'PanNuke fold {fold} in {base}: missing '
                                f'{sorted(missing)}')
    flat = [osp.join(src, f) for f in ('images.npy', 'masks.npy', 'types.npy')]
    if all(osp.isfile(p) for p in flat):
        return tuple(flat)
    if any(osp.exists(p) for p in flat):
        # A flat fold with a file missing (or a folder in its place).
        bad = [p for p in flat if not osp.isfile(p)]
        raise FileNotFoundError(
            f'PanNuke fold {fold} in {src}: '
            + ', '.join(f'{p} ' + ('is a directory' if osp.isdir(p) else
                                   'is missing') for p in bad))
    raise FileNotFoundError(
        f'PanNuke fold {fold} not found under {src}: expected "Fold {fold}/'
        f'images/fold{fold}/images.npy" (and masks.npy, types.npy) or the '
        'three .npy files directly in that folder')


def pannuke_masks_to_instance_map(
        masks: np.ndarray,
        name: str = 'masks') -> Tuple[np.ndarray, Dict[int, int]]:
    """Merge PanNuke's per-class channels into one instance map.

    Args:
        masks (np.ndarray): (H, W, 6) (or (H, W, 5)) per-class instance-id
            maps, any numeric dtype with integral values.
        name (str): for error messages.

    Returns:
        tuple: (H, W) int32 instance map with consecutive ids 1..N (fully
        overwritten instances vanish), and dict id -> class (1..5).
    """
    if masks.ndim != 3 or masks.shape[-1] not in (5, 6):
        raise ValueError(f'{name}: expected (H, W, 6) PanNuke masks, got '
                         f'{masks.shape}')
    inst = np.zeros(masks.shape[:2], np.int64)
    cls_of: Dict[int, int] = {}
    offset = 0
    for c in range(5):
        ch = np.asarray(masks[..., c])
        if not np.array_equal(ch, np.round(ch)) or ch.min() < 0:
            raise ValueError(f'{name}: channel {c} has negative, '
                             'non-integer or NaN ids')
        ids, inv = np.unique(ch.astype(np.int64), return_inverse=True)
        inv = inv.reshape(ch.shape)
        start = 1 if ids[0] == 0 else 0
        k = len(ids) - start
        if k == 0:
            continue
        # ids[start:] -> offset+1 .. offset+k
        fg = inv >= start
        inst[fg] = inv[fg] - start + 1 + offset
        for i in range(offset + 1, offset + k + 1):
            cls_of[i] = c + 1
        offset += k
    ids, inv = np.unique(inst, return_inverse=True)
    remap = inv.reshape(inst.shape).astype(np.int32)
    if ids[0] != 0:  # no background pixel at all
        remap += 1
        ids = np.concatenate([[0], ids])
    classes = {j: cls_of[int(old)] for j, old in enumerate(ids) if j > 0}
    return remap, classes


def convert_pannuke(src: str,
                    out_root: str,
                    folds: Sequence[int] = (1, 2, 3),
                    max_images: Optional[int] = None,
                    write_maps: bool = True) -> Dict[str, str]:
    """Convert PanNuke folds to ``annotations/fold<k>.json``.

    Args:
        src (str): folder holding ``Fold 1``, ``Fold 2``, ``Fold 3`` (or a
            flat folder with one fold's three .npy files; then give a single
            fold number).
        out_root (str): output dataset root.
        folds (Sequence[int]): folds to convert. Defaults to (1, 2, 3).
        max_images (int, optional): convert only the first N images of each
            fold (quick checks). Defaults to None (all).
        write_maps (bool): write inst_maps/ and class_maps/. Defaults to
            True.

    Returns:
        dict: ``fold<k>`` -> annotation JSON path.
    """
    writer = CocoLayoutWriter(out_root, PANNUKE_CLASSES, write_maps)
    for k in folds:
        img_p, mask_p, type_p = find_pannuke_fold(src, k)
        # Memory-mapped: a fold's masks are ~8 GB as float64. load_npy
        # checks each header against the file size first (truncated
        # downloads) and refuses pickles.
        images = load_npy(img_p, mmap_mode='r')
        masks = load_npy(mask_p, mmap_mode='r')
        types = load_npy(type_p)
        for path, arr, rank in ((img_p, images, 4), (mask_p, masks, 4),
                                (type_p, types, 1)):
            if arr.ndim != rank:
                raise ValueError(f'{path}: expected a {rank}-D array, got '
                                 f'shape {arr.shape}')
        for path, arr in ((img_p, images), (mask_p, masks)):
            if not (np.issubdtype(arr.dtype, np.number)
                    or arr.dtype == bool) or np.issubdtype(
                        arr.dtype, np.complexfloating):
                raise ValueError(f'{path}: expected a real numeric array, '
                                 f'got dtype {arr.dtype}')
        n = len(images)
        if len(masks) != n or len(types) != n:
            raise ValueError(
                f'PanNuke fold {k}: {img_p} has {n} images but {mask_p} has '
                f'{len(masks)} masks and {type_p} {len(types)} types')
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f'{img_p}: expected (N, H, W, 3), got '
                             f'{images.shape}')
        if masks.shape[1:3] != images.shape[1:3]:
            raise ValueError(f'{mask_p}: mask size {masks.shape[1:3]} differs'
                             f' from image size {images.shape[1:3]}')
        for j in range(n if max_images is None else min(n, max_images)):
            name = f'{mask_p}[{j}]'
            inst, cls = pannuke_masks_to_instance_map(np.asarray(masks[j]),
                                                      name)
            # The image is checked (NaN, dtype) under its own file's name.
            image = to_uint8_rgb(np.asarray(images[j]), f'{img_p}[{j}]')
            writer.add(f'{k}_{j}',
                       image,
                       inst,
                       split=f'fold{k}',
                       inst_classes=cls,
                       tissue=str(types[j]),
                       name=name)
    return writer.save()
