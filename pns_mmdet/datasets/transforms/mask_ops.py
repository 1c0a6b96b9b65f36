"""Exact operations on (N, H, W) instance-mask stacks, done per nucleus box.

Nuclei cover a tiny part of the image, so a 1000 x 1000 tile with 600
nuclei has a 600 MB mask stack that is almost all zeros. Working on each
mask's bounding box and writing into a fresh ``np.zeros`` array (whose
untouched pages the OS never materialises) keeps flips and rotations at
milliseconds instead of copying the whole stack.
"""
from typing import List, Tuple

import numpy as np
from mmdet.structures.mask import BitmapMasks

__all__ = ['bitmap_masks_nocopy', 'mask_boxes', 'flip_masks', 'rot90_masks']


def bitmap_masks_nocopy(masks: np.ndarray) -> BitmapMasks:
    """Wrap an (N, H, W) array in BitmapMasks without copying it.

    ``BitmapMasks.__init__`` always ``np.stack``-s its input, a full copy of
    N x H x W bytes.
    """
    if masks.ndim != 3:
        raise ValueError(f'expected (N, H, W) masks, got {masks.shape}')
    out = BitmapMasks.__new__(BitmapMasks)
    out.height, out.width = int(masks.shape[1]), int(masks.shape[2])
    out.masks = masks
    return out


def mask_boxes(masks: np.ndarray) -> List[Tuple[int, int, int, int]]:
    """Tight (y0, y1, x0, x1) boxes (exclusive ends); None when empty."""
    cols_any = masks.any(axis=1)  # (N, W)
    out = []
    for i in range(len(masks)):
        cols = np.flatnonzero(cols_any[i])
        if cols.size == 0:
            out.append(None)
            continue
        x0, x1 = int(cols[0]), int(cols[-1]) + 1
        rows = np.flatnonzero(masks[i, :, x0:x1].any(axis=1))
        out.append((int(rows[0]), int(rows[-1]) + 1, x0, x1))
    return out


def flip_masks(masks: np.ndarray, direction: str) -> np.ndarray:
    """Flip an (N, H, W) stack: 'horizontal', 'vertical' or 'diagonal'."""
    if direction not in ('horizontal', 'vertical', 'diagonal'):
        raise ValueError(f'unknown flip direction {direction!r}')
    n, h, w = masks.shape
    out = np.zeros(masks.shape, masks.dtype)  # calloc: lazily zeroed
    hor = direction in ('horizontal', 'diagonal')
    ver = direction in ('vertical', 'diagonal')
    for i, box in enumerate(mask_boxes(masks)):
        if box is None:
            continue
        y0, y1, x0, x1 = box
        crop = masks[i, y0:y1, x0:x1]
        if hor:
            crop, x0, x1 = crop[:, ::-1], w - x1, w - x0
        if ver:
            crop, y0, y1 = crop[::-1], h - y1, h - y0
        out[i, y0:y1, x0:x1] = crop
    return out


def rot90_masks(masks: np.ndarray, k: int) -> np.ndarray:
    """``np.rot90(masks, k, axes=(1, 2))``, computed per bounding box."""
    k = k % 4
    n, h, w = masks.shape
    if k == 0:
        return masks
    oh, ow = (h, w) if k == 2 else (w, h)
    out = np.zeros((n, oh, ow), masks.dtype)
    for i, box in enumerate(mask_boxes(masks)):
        if box is None:
            continue
        y0, y1, x0, x1 = box
        crop = masks[i, y0:y1, x0:x1]
        hh, ww = h, w
        for _ in range(k):
            # np.rot90 (k=1): pixel (r, c) of a ww-wide image -> (ww-1-c, r)
            crop = np.rot90(crop)
            y0, y1, x0, x1 = ww - x1, ww - x0, y0, y1
            hh, ww = ww, hh
        out[i, y0:y1, x0:x1] = crop
    return out
