"""Geometric augmentations that keep instance masks exact or consistent.

mmdet's ``RandomFlip`` (horizontal / vertical / diagonal) and
``RandomCrop`` already handle masks and are reused by the configs. These
fill the gaps of the upstream PromptNucSeg (albumentations) lists:
``RandomRotate90`` (exact) and ``RandomShiftScale`` (``ShiftScaleRotate``
with rotation 0; masks resampled with nearest neighbour).

Run :class:`NucleusPointsFromMasks` after them: points are derived from the
transformed masks, not transformed themselves.
"""
from typing import Sequence, Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.datasets.transforms import RandomFlip
from mmdet.registry import TRANSFORMS
from mmdet.structures.bbox import BaseBoxes, HorizontalBoxes
from mmdet.structures.mask import BitmapMasks, PolygonMasks

from .mask_ops import bitmap_masks_nocopy, flip_masks, rot90_masks

__all__ = ['RandomRotate90', 'RandomShiftScale', 'RandomNucleusFlip']


def _as_bitmap(masks) -> BitmapMasks:
    if isinstance(masks, PolygonMasks):
        return masks.to_bitmap()
    if not isinstance(masks, BitmapMasks):
        raise TypeError('gt_masks must be BitmapMasks or PolygonMasks, got '
                        f'{type(masks).__name__}')
    return masks


def _set_boxes(results: dict, boxes: np.ndarray) -> None:
    old = results.get('gt_bboxes')
    if isinstance(old, BaseBoxes):
        results['gt_bboxes'] = HorizontalBoxes(boxes.astype(np.float32),
                                               dtype=old.tensor.dtype)
    else:
        results['gt_bboxes'] = boxes.astype(np.float32)


@TRANSFORMS.register_module()
class RandomRotate90(BaseTransform):
    """Rotate image, masks, boxes and seg map by k x 90 degrees (exact).

    Like ``albumentations.RandomRotate90``: with probability ``prob`` a
    k is drawn uniformly from ``ks`` (by default {0, 1, 2, 3}, so k = 0 is
    possible). Rotation is counter-clockwise as displayed (``np.rot90``):
    pixel (x, y) of a W-wide image goes to (y, W - 1 - x) for k = 1.

    Required keys: ``img``. Modified keys: ``img``, ``img_shape``,
    ``gt_bboxes``, ``gt_masks``, ``gt_seg_map`` (each when present). Added
    key: ``rot90_k``.

    Args:
        prob (float): probability of applying. Defaults to 0.5.
        ks (Sequence[int]): candidate multiples of 90 degrees. Defaults to
            (0, 1, 2, 3).
    """

    def __init__(self,
                 prob: float = 0.5,
                 ks: Sequence[int] = (0, 1, 2, 3)) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        if not ks or any(int(k) != k for k in ks):
            raise ValueError(f'ks must be non-empty integers, got {ks}')
        self.prob = prob
        self.ks = tuple(int(k) % 4 for k in ks)

    @staticmethod
    def rotate_boxes(boxes: np.ndarray, k: int, width: int,
                     height: int) -> np.ndarray:
        """Rotate (N, 4) xyxy boxes of a ``width`` x ``height`` image."""
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        for _ in range(k % 4):
            x1, y1, x2, y2 = b.T
            b = np.stack([y1, width - x2, y2, width - x1], axis=1)
            width, height = height, width
        return b

    def transform(self, results: dict) -> dict:
        k = 0
        if np.random.rand() < self.prob:
            k = self.ks[np.random.randint(len(self.ks))]
        results['rot90_k'] = k
        if k == 0:
            return results
        img = results['img']
        h, w = img.shape[:2]
        results['img'] = np.ascontiguousarray(np.rot90(img, k))
        results['img_shape'] = results['img'].shape[:2]
        if 'gt_bboxes' in results:
            old = results['gt_bboxes']
            arr = old.numpy() if isinstance(old, BaseBoxes) else old
            _set_boxes(results, self.rotate_boxes(arr, k, w, h))
        if 'gt_masks' in results:
            m = _as_bitmap(results['gt_masks'])
            results['gt_masks'] = bitmap_masks_nocopy(rot90_masks(m.masks, k))
        if results.get('gt_seg_map') is not None:
            results['gt_seg_map'] = np.ascontiguousarray(
                np.rot90(results['gt_seg_map'], k))
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(prob={self.prob}, ks={self.ks})'


def warp_masks_affine(
        masks: np.ndarray, matrix: np.ndarray,
        out_shape: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Warp binary masks with an affine map, one bounding box at a time.

    Args:
        masks (np.ndarray): (N, H, W) binary masks.
        matrix (np.ndarray): (2, 3) forward affine map, source pixel
            (x, y) -> destination (x, y).
        out_shape (tuple): destination (H', W').

    Returns:
        tuple: (N, H', W') uint8 warped masks (nearest neighbour) and
        (N, 4) float32 tight xyxy boxes (zeros for empty masks).
    """
    n = len(masks)
    oh, ow = out_shape
    out = np.zeros((n, oh, ow), np.uint8)
    boxes = np.zeros((n, 4), np.float32)
    if n == 0:
        return out, boxes
    cols_any = masks.any(axis=1)
    rows_any = masks.any(axis=2)
    lin, t = matrix[:, :2], matrix[:, 2]
    for i in range(n):
        cols = np.flatnonzero(cols_any[i])
        if cols.size == 0:
            continue
        rows = np.flatnonzero(rows_any[i])
        x0, x1 = cols[0], cols[-1] + 1
        y0, y1 = rows[0], rows[-1] + 1
        corners = np.array(
            [[x0 - 1, y0 - 1], [x1, y0 - 1], [x0 - 1, y1], [x1, y1]],
            np.float64)
        dst = corners @ lin.T + t
        dx0 = int(max(0, np.floor(dst[:, 0].min()) - 1))
        dy0 = int(max(0, np.floor(dst[:, 1].min()) - 1))
        dx1 = int(min(ow, np.ceil(dst[:, 0].max()) + 2))
        dy1 = int(min(oh, np.ceil(dst[:, 1].max()) + 2))
        if dx1 <= dx0 or dy1 <= dy0:
            continue
        # Same map expressed between the source crop and the output crop.
        m = np.concatenate(
            [lin, (lin @ np.array([x0, y0]) + t - [dx0, dy0])[:, None]], 1)
        crop = cv2.warpAffine(np.ascontiguousarray(
            masks[i, y0:y1, x0:x1]).astype(np.uint8),
                              m, (dx1 - dx0, dy1 - dy0),
                              flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)
        out[i, dy0:dy1, dx0:dx1] = crop
        ys, xs = np.nonzero(crop)
        if xs.size:
            boxes[i] = (xs.min() + dx0, ys.min() + dy0, xs.max() + dx0 + 1,
                        ys.max() + dy0 + 1)
    return out, boxes


@TRANSFORMS.register_module()
class RandomShiftScale(BaseTransform):
    """Random shift and isotropic scale about the image centre.

    The ``ShiftScaleRotate(shift_limit, scale_limit, rotate_limit=0,
    border_mode=constant)`` of upstream PromptNucSeg: shift dx, dy uniform
    in ``[-max_shift, max_shift]`` x image size, scale uniform in
    ``scale_range``. The image is resampled bilinearly, masks and the seg
    map with nearest neighbour (per nucleus bounding box, so cost follows
    the nuclei, not N x H x W); boxes become the tight boxes of the warped
    masks (or the transformed box corners without masks). Nuclei pushed
    out of the image end up with empty masks and are removed by
    :class:`NucleusPointsFromMasks`.

    Required keys: ``img``. Modified keys: ``img``, ``gt_bboxes``,
    ``gt_masks``, ``gt_seg_map`` (when present). Image size is unchanged.

    Args:
        prob (float): probability of applying. Defaults to 0.5.
        max_shift (float): maximum shift as a fraction of width/height.
            Defaults to 0.3.
        scale_range (tuple): scale factor range. Defaults to (0.9, 1.1).
        border_val (int | tuple): image fill value. Defaults to 0 (as
            albumentations' constant border).
    """

    def __init__(self,
                 prob: float = 0.5,
                 max_shift: float = 0.3,
                 scale_range: Tuple[float, float] = (0.9, 1.1),
                 border_val=0) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        if not (0 < scale_range[0] <= scale_range[1]):
            raise ValueError(f'invalid scale_range {scale_range}')
        self.prob = prob
        self.max_shift = max_shift
        self.scale_range = tuple(scale_range)
        self.border_val = border_val

    def _matrix(self, h: int, w: int) -> np.ndarray:
        s = np.random.uniform(*self.scale_range)
        dx = np.random.uniform(-self.max_shift, self.max_shift) * w
        dy = np.random.uniform(-self.max_shift, self.max_shift) * h
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        return np.array([[s, 0, (1 - s) * cx + dx], [0, s, (1 - s) * cy + dy]],
                        np.float64)

    def transform(self, results: dict) -> dict:
        if np.random.rand() >= self.prob:
            return results
        img = results['img']
        h, w = img.shape[:2]
        mat = self._matrix(h, w)
        bv = self.border_val
        if not isinstance(bv, (int, float)):
            bv = tuple(bv)
        results['img'] = cv2.warpAffine(img,
                                        mat, (w, h),
                                        flags=cv2.INTER_LINEAR,
                                        borderMode=cv2.BORDER_CONSTANT,
                                        borderValue=bv)
        if 'gt_masks' in results:
            m = _as_bitmap(results['gt_masks'])
            warped, boxes = warp_masks_affine(m.masks, mat, (h, w))
            results['gt_masks'] = bitmap_masks_nocopy(warped)
            if 'gt_bboxes' in results:
                _set_boxes(results, boxes)
        elif 'gt_bboxes' in results:
            old = results['gt_bboxes']
            b = old.numpy() if isinstance(old, BaseBoxes) else np.asarray(old)
            b = b.reshape(-1, 4) * mat[0, 0]
            b[:, 0::2] += mat[0, 2]
            b[:, 1::2] += mat[1, 2]
            b[:, 0::2] = b[:, 0::2].clip(0, w)
            b[:, 1::2] = b[:, 1::2].clip(0, h)
            _set_boxes(results, b)
        if results.get('gt_seg_map') is not None:
            results['gt_seg_map'] = cv2.warpAffine(
                results['gt_seg_map'],
                mat, (w, h),
                flags=cv2.INTER_NEAREST,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(prob={self.prob}, max_shift='
                f'{self.max_shift}, scale_range={self.scale_range}, '
                f'border_val={self.border_val})')


@TRANSFORMS.register_module()
class RandomNucleusFlip(RandomFlip):
    """:class:`mmdet.datasets.transforms.RandomFlip` with fast mask flips.

    Same arguments and results (``prob``, ``direction`` among
    'horizontal' / 'vertical' / 'diagonal', ``flip`` and
    ``flip_direction`` keys, homography matrix); only the BitmapMasks flip
    differs: each mask is flipped within its bounding box
    (:func:`flip_masks`) instead of N full-size flips followed by
    ``np.stack`` (seconds on a 1000 x 1000 tile with hundreds of nuclei).
    """

    def _flip(self, results: dict) -> None:
        masks = results.get('gt_masks')
        if not isinstance(masks, BitmapMasks):
            return super()._flip(results)
        del results['gt_masks']
        try:
            super()._flip(results)
        finally:
            results['gt_masks'] = masks
        results['gt_masks'] = bitmap_masks_nocopy(
            flip_masks(masks.masks, results['flip_direction']))
