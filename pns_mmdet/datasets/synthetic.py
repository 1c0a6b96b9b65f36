"""Seeded synthetic H&E-like nucleus tiles with exact instance/class maps.

For tests, demos and smoke-training without real data. A tile has textured
pink stroma with fibres and a few pale lumina, and purple nuclei of PanNuke's
five classes whose size, shape and colour depend on the class (so a model can
learn them), with many touching and overlapping pairs (later nuclei occlude
earlier ones, as in polygon-derived maps). Tissue names change the class mix
and the stain tint.

Everything is drawn from ``numpy.random.Generator`` streams derived from
(seed, split, index), so a tile does not depend on how many others are
generated.
"""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Set, Tuple

import cv2
import numpy as np

from .coco_writer import CocoLayoutWriter
from .nucleus_dataset import PANNUKE_METAINFO

__all__ = [
    'SYNTHETIC_CLASSES', 'SYNTHETIC_TISSUES', 'generate_tile',
    'touching_pairs', 'make_synthetic_dataset'
]

SYNTHETIC_CLASSES = tuple(PANNUKE_METAINFO['classes'])
SYNTHETIC_TISSUES = ('Breast', 'Colon', 'Lung', 'Kidney', 'Skin')

# Per class: (semi-axis a range, aspect b/a range, irregularity, RGB colour,
# chromatin texture strength). Sizes in pixels at PanNuke's 40x.
_CLASS_STYLE = {
    1: ((8.0, 12.0), (0.65, 0.95), 0.16, (95, 45, 130), 14.0),  # Neoplastic
    2: ((3.5, 5.0), (0.85, 1.0), 0.04, (45, 20, 95), 6.0),  # Inflammatory
    3: ((8.0, 12.0), (0.22, 0.38), 0.05, (120, 60, 145), 8.0),  # Connective
    4: ((2.5, 4.0), (0.6, 0.95), 0.30, (30, 10, 45), 4.0),  # Dead
    5: ((5.5, 7.5), (0.7, 0.95), 0.08, (150, 95, 175), 12.0),  # Epithelial
}

# Class mixture per tissue (Neo, Inf, Con, Dead, Epi) and stroma tint.
_TISSUE_STYLE = {
    'Breast': ((0.40, 0.20, 0.20, 0.05, 0.15), (236, 172, 205)),
    'Colon': ((0.30, 0.25, 0.10, 0.05, 0.30), (228, 160, 200)),
    'Lung': ((0.25, 0.35, 0.25, 0.10, 0.05), (240, 185, 210)),
    'Kidney': ((0.15, 0.20, 0.20, 0.05, 0.40), (232, 165, 190)),
    'Skin': ((0.20, 0.15, 0.35, 0.05, 0.25), (238, 180, 200)),
}


def _smooth_noise(rng: np.random.Generator, shape: Tuple[int, int],
                  cell: int) -> np.ndarray:
    """Zero-mean, unit-ish smooth noise by bicubic upsampling."""
    h, w = shape
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    small = rng.standard_normal((gh, gw)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _stroma(rng: np.random.Generator, size: Tuple[int, int],
            tint: Sequence[int]) -> np.ndarray:
    """(H, W, 3) float32 pink stroma with fibres and pale lumina."""
    h, w = size
    base = np.asarray(tint, np.float32)[None, None, :]
    # Fibres: noise smeared along one random direction.
    angle = rng.uniform(0, 180)
    k = np.zeros((15, 15), np.float32)
    k[7, :] = 1.0 / 15
    rot = cv2.getRotationMatrix2D((7, 7), angle, 1.0)
    k = cv2.warpAffine(k, rot, (15, 15))
    k /= max(k.sum(), 1e-6)
    fibres = cv2.filter2D(
        rng.standard_normal((h, w)).astype(np.float32), -1, k)
    low = _smooth_noise(rng, size, 48)
    mid = _smooth_noise(rng, size, 12)
    img = base + (14 * low + 8 * mid + 40 * fibres)[..., None] * np.array(
        [0.6, 1.0, 0.7], np.float32)
    # A few pale lumina / fat spaces.
    for _ in range(rng.integers(0, 3)):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.06, 0.16) * min(h, w)
        yy, xx = np.ogrid[:h, :w]
        d = np.sqrt((xx - cx)**2 + (yy - cy)**2) / r + 0.25 * mid
        a = np.clip(1.5 - d, 0, 1)[..., None]
        img = img * (1 - a) + np.array([248, 240, 245], np.float32) * a
    return img


def _nucleus_mask(rng: np.random.Generator,
                  cls: int) -> Tuple[np.ndarray, float]:
    """Random nucleus shape of class ``cls`` centred in a small grid.

    Returns:
        tuple: (m, m) bool mask with the centre at (m // 2, m // 2), and
        the nominal radius (semi-major axis).
    """
    (amin, amax), (bmin, bmax), irr, _, _ = _CLASS_STYLE[cls]
    a = rng.uniform(amin, amax)
    b = a * rng.uniform(bmin, bmax)
    theta = rng.uniform(0, np.pi)
    half = int(np.ceil(a * (1 + 3 * irr))) + 2
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
    xr = xx * np.cos(theta) + yy * np.sin(theta)
    yr = -xx * np.sin(theta) + yy * np.cos(theta)
    ang = np.arctan2(yr / b, xr / a)
    rho = np.sqrt((xr / a)**2 + (yr / b)**2)
    # Irregular outline: a few low-frequency harmonics of the radius.
    bound = np.ones_like(ang)
    for f in (2, 3, 5):
        bound += irr * rng.uniform(
            -1, 1) * np.cos(f * ang + rng.uniform(0, 2 * np.pi))
    mask = rho <= bound
    if cls == 4 and rng.random() < 0.5:
        # Dead cells: sometimes fragmented / notched (concave).
        cut = (xr - rng.uniform(-0.2, 0.2) * a)**2 + yr**2 < (0.45 * a)**2
        mask &= ~(cut & (xr > 0))
    if not mask.any():
        mask[half, half] = True
    return mask, a


def touching_pairs(inst_map: np.ndarray) -> Set[Tuple[int, int]]:
    """Pairs of distinct instances that share a 4-connected boundary.

    Args:
        inst_map (np.ndarray): (H, W) instance ids.

    Returns:
        set: {(a, b)} with a < b.
    """
    pairs: Set[Tuple[int, int]] = set()
    for a, b in ((inst_map[:, :-1], inst_map[:, 1:]), (inst_map[:-1, :],
                                                       inst_map[1:, :])):
        sel = (a != b) & (a > 0) & (b > 0)
        lo = np.minimum(a[sel], b[sel])
        hi = np.maximum(a[sel], b[sel])
        pairs.update(zip(lo.tolist(), hi.tolist()))
    return pairs


def generate_tile(rng: np.random.Generator,
                  size: int = 256,
                  num_nuclei: Tuple[int, int] = (15, 45),
                  touching_fraction: float = 0.4,
                  tissue: Optional[str] = None,
                  empty_prob: float = 0.0,
                  min_visible: float = 0.6) -> dict:
    """Draw one synthetic tile.

    Args:
        rng (np.random.Generator): random stream.
        size (int): tile side (pixels). Defaults to 256.
        num_nuclei (tuple): range of nuclei per 256 x 256 area (scaled by
            area). Defaults to (15, 45).
        touching_fraction (float): fraction of nuclei placed against an
            existing one (half touching, half overlapping it). Defaults to
            0.4.
        tissue (str, optional): one of :data:`SYNTHETIC_TISSUES`; random if
            None.
        empty_prob (float): probability of a tile without nuclei. Defaults
            to 0.
        min_visible (float): a placement is rejected when it would leave an
            earlier nucleus with less than this fraction of its pixels.
            Defaults to 0.6.

    Returns:
        dict: ``image`` (H, W, 3) uint8 RGB, ``inst_map`` (H, W) int32
        (consecutive ids, 0 = background), ``inst_classes`` (id -> class
        1..5), ``class_map`` (H, W) uint8, ``tissue`` (str), ``pairs``
        (set of touching/overlapping id pairs).
    """
    if not 0 <= touching_fraction <= 1:
        raise ValueError(f'touching_fraction must be in [0, 1], got '
                         f'{touching_fraction}')
    if tissue is None:
        tissue = SYNTHETIC_TISSUES[rng.integers(len(SYNTHETIC_TISSUES))]
    if tissue not in _TISSUE_STYLE:
        raise ValueError(f'unknown tissue {tissue!r}; choose from '
                         f'{list(_TISSUE_STYLE)}')
    mix, tint = _TISSUE_STYLE[tissue]
    h = w = int(size)
    inst = np.zeros((h, w), np.int32)
    classes: Dict[int, int] = {}
    centres: List[Tuple[float, float, float]] = []  # (x, y, radius)
    areas: Dict[int, int] = {}
    n_target = 0
    if rng.random() >= empty_prob:
        scale = (h * w) / 256.0**2
        n_target = int(rng.integers(num_nuclei[0], num_nuclei[1] + 1) * scale)
    next_id = 1
    attempts = 0
    while len(classes) < n_target and attempts < 20 * max(n_target, 1):
        attempts += 1
        cls = int(rng.choice(5, p=mix)) + 1
        mask, rad = _nucleus_mask(rng, cls)
        half = mask.shape[0] // 2
        mode = 'free'
        if centres and rng.random() < touching_fraction:
            mode = 'overlap' if rng.random() < 0.5 else 'touch'
            px, py, pr = centres[rng.integers(len(centres))]
            ang = rng.uniform(0, 2 * np.pi)
            # Overlap: the new nucleus covers part of the old one; touch:
            # it is pushed in less and only fills the free pixels, so the
            # two share a boundary without occlusion.
            dist = (pr + rad) * (rng.uniform(0.5, 0.8) if mode == 'overlap'
                                 else rng.uniform(0.75, 0.95))
            cx, cy = px + dist * np.cos(ang), py + dist * np.sin(ang)
        else:
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        ix, iy = int(round(cx)), int(round(cy))
        y0, x0 = iy - half, ix - half
        ys, xs = np.nonzero(mask)
        ys, xs = ys + y0, xs + x0
        ok = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        ys, xs = ys[ok], xs[ok]
        if len(ys) < 6:
            continue
        under = inst[ys, xs]
        if mode == 'free' and (under > 0).any():
            continue
        if mode == 'touch':
            free = under == 0
            ys, xs = ys[free], xs[free]
            if len(ys) < 0.6 * ok.sum():
                continue
            under = inst[ys, xs]
        ids, counts = np.unique(under[under > 0], return_counts=True)
        if any(areas[i] - c < min_visible * areas[i] or areas[i] - c < 6
               for i, c in zip(ids.tolist(), counts.tolist())):
            continue
        for i, c in zip(ids.tolist(), counts.tolist()):
            areas[i] -= c
        inst[ys, xs] = next_id
        classes[next_id] = cls
        areas[next_id] = len(ys)
        centres.append((cx, cy, rad))
        next_id += 1
    # Keep ids consecutive and drop any id that vanished.
    present = np.unique(inst)
    present = present[present > 0]
    lut = np.zeros(next_id, np.int32)
    lut[present] = np.arange(1, len(present) + 1)
    inst = lut[inst]
    classes = {int(lut[o]): c for o, c in classes.items() if lut[o] > 0}
    class_lut = np.zeros(len(present) + 1, np.uint8)
    for i, c in classes.items():
        class_lut[i] = c
    class_map = class_lut[inst]
    image = _render(rng, inst, classes, tint)
    return dict(image=image,
                inst_map=inst,
                inst_classes=classes,
                class_map=class_map,
                tissue=tissue,
                pairs=touching_pairs(inst))


def _render(rng: np.random.Generator, inst: np.ndarray,
            classes: Dict[int, int], tint: Sequence[int]) -> np.ndarray:
    """Paint stroma and nuclei from the instance map (RGB uint8)."""
    h, w = inst.shape
    img = _stroma(rng, (h, w), tint)
    n = len(classes)
    if n:
        colours = np.zeros((n + 1, 3), np.float32)
        texture = np.zeros(n + 1, np.float32)
        for i, c in classes.items():
            base = np.asarray(_CLASS_STYLE[c][3], np.float32)
            # Per-nucleus shade so touching nuclei differ slightly.
            colours[i] = base * rng.uniform(0.85, 1.15) + rng.normal(0, 6, 3)
            texture[i] = _CLASS_STYLE[c][4]
        fg = inst > 0
        chrom = _smooth_noise(rng, (h, w), 3)
        nuc = colours[inst] + (texture[inst] * chrom)[..., None]
        # Darker rim on every instance boundary (also between touching
        # nuclei), as the nuclear membrane stains darker.
        er = cv2.erode(inst.astype(np.float32), np.ones((3, 3), np.uint8))
        di = cv2.dilate(inst.astype(np.float32), np.ones((3, 3), np.uint8))
        rim = fg & ((er != inst) | (di != inst))
        nuc[rim] *= 0.72
        alpha = np.where(fg, 0.92, 0.0).astype(np.float32)[..., None]
        img = img * (1 - alpha) + nuc * alpha
    img = cv2.GaussianBlur(img, (0, 0), 0.7)
    img += rng.normal(0, 3.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def make_synthetic_dataset(out_root: str,
                           num_train: int = 16,
                           num_val: int = 4,
                           num_test: int = 4,
                           size: int = 256,
                           seed: int = 0,
                           touching_fraction: float = 0.4,
                           num_nuclei: Tuple[int, int] = (15, 45),
                           empty_prob: float = 0.0,
                           write_maps: bool = True) -> Dict[str, str]:
    """Write a synthetic dataset in the pns_mmdet COCO layout.

    Stems are ``<split>_<index:04d>``; tile i of a split is drawn from
    ``np.random.default_rng([seed, split_index, i])`` (split_index 0/1/2
    for train/val/test), so it is identical whatever the split sizes.

    Args:
        out_root (str): output root (e.g. ``data/synthetic``).
        num_train (int): train tiles. Defaults to 16.
        num_val (int): val tiles. Defaults to 4.
        num_test (int): test tiles. Defaults to 4.
        size (int): tile side. Defaults to 256.
        seed (int): master seed. Defaults to 0.
        touching_fraction (float): see :func:`generate_tile`. Defaults to
            0.4.
        num_nuclei (tuple): nuclei per 256^2 area. Defaults to (15, 45).
        empty_prob (float): probability of an empty tile. Defaults to 0.
        write_maps (bool): write inst_maps/ and class_maps/. Defaults to
            True.

    Returns:
        dict: split -> annotation JSON path (splits with 0 tiles are
        skipped).
    """
    writer = CocoLayoutWriter(out_root, SYNTHETIC_CLASSES, write_maps)
    for s_idx, (split, num) in enumerate(
        (('train', num_train), ('val', num_val), ('test', num_test))):
        for i in range(num):
            rng = np.random.default_rng([seed, s_idx, i])
            tile = generate_tile(rng,
                                 size=size,
                                 num_nuclei=num_nuclei,
                                 touching_fraction=touching_fraction,
                                 empty_prob=empty_prob)
            writer.add(f'{split}_{i:04d}',
                       tile['image'],
                       tile['inst_map'],
                       split=split,
                       inst_classes=tile['inst_classes'],
                       tissue=tile['tissue'],
                       name=osp.join(out_root, f'{split}_{i:04d}'))
    return writer.save()
