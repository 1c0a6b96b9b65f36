"""Tissue masks at thumbnail resolution: detected, or given as an image.

Detection is Otsu's threshold (scikit-image) on a stain-sensitive channel of
a low-resolution thumbnail, followed by morphological clean-up: H&E tissue
is saturated (pink/purple) or optically dense, glass is neither. Processing
tiles without tissue are skipped by the runner, so the mask errs on the side
of tissue (closing, hole filling) rather than losing faint regions.

Mask pixel ``(i, j)`` of an (h, w) mask covers the same slide area as the
thumbnail pixel it was computed from; a mask maps to level 0 by the scale
``W / w`` (x) and ``H / h`` (y).
"""
import os
import os.path as osp
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from skimage import color, filters, morphology

__all__ = ['detect_tissue', 'load_tissue_mask', 'TISSUE_CHANNELS']

#: Channels :func:`detect_tissue` can threshold.
TISSUE_CHANNELS = ('saturation', 'od')

# Otsu threshold bounds per channel. Below the lower bound Otsu is
# splitting glass noise (a slide with no tissue); above the upper bound it
# is splitting the tissue itself into light and dark parts (a thumbnail with
# no glass). H&E stroma has saturation >= ~0.15 and OD >= ~0.2; clean glass
# stays below 0.05 on both.
_BOUNDS = {'saturation': (0.05, 0.15), 'od': (0.05, 0.25)}


def _channel(rgb: np.ndarray, channel: str) -> np.ndarray:
    if channel == 'saturation':
        return color.rgb2hsv(rgb)[..., 1]
    # Mean optical density, OD = -log10(I / 255): additive in stain amount.
    od = -np.log10(np.maximum(rgb.astype(np.float32), 1.0) / 255.0)
    return od.mean(axis=2)


def _remove_small(mask: np.ndarray, max_size: int, holes: bool) -> np.ndarray:
    fn = morphology.remove_small_holes if holes else \
        morphology.remove_small_objects
    if max_size <= 0:
        return mask
    try:  # scikit-image >= 0.26
        return fn(mask, max_size=max_size)
    except TypeError:  # older releases: strictly-smaller semantics
        kw = 'area_threshold' if holes else 'min_size'
        return fn(mask, **{kw: max_size + 1})


def detect_tissue(thumb_rgb: np.ndarray,
                  mpp: Optional[float] = None,
                  channel: str = 'saturation',
                  closing_um: float = 20.0,
                  min_area_um2: float = 5000.0,
                  hole_area_um2: float = 20000.0,
                  closing_px: int = 2,
                  min_area_px: int = 64,
                  hole_area_px: int = 64) -> np.ndarray:
    """Tissue mask of a slide thumbnail.

    Args:
        thumb_rgb (np.ndarray): (h, w, 3) uint8 RGB thumbnail (e.g.
            :meth:`SlideReader.thumbnail`).
        mpp (float, optional): µm per thumbnail pixel. When given, the
            clean-up sizes are the physical ``*_um`` / ``*_um2`` values;
            otherwise the ``*_px`` values (thumbnail pixels).
        channel (str): ``'saturation'`` (HSV) or ``'od'`` (mean optical
            density). Defaults to 'saturation'.
        closing_um (float): Radius of the closing that joins tissue
            fragments, µm. Defaults to 20.
        min_area_um2 (float): Tissue parts up to this area are dropped
            (dust, pen dots), µm². Defaults to 5000 (a 70 µm square; a
            larger default dropped whole small biopsy fragments, whose
            nuclei are then lost).
        hole_area_um2 (float): Holes up to this area are filled (lumina,
            fat), µm². Defaults to 20000.
        closing_px (int): ``closing_um`` without ``mpp``. Defaults to 2.
        min_area_px (int): ``min_area_um2`` without ``mpp``. Defaults to 64.
        hole_area_px (int): ``hole_area_um2`` without ``mpp``. Defaults to
            64.

    Returns:
        np.ndarray: (h, w) bool, True on tissue.
    """
    rgb = np.asarray(thumb_rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f'detect_tissue: expected an (h, w, 3) uint8 RGB '
                         f'thumbnail, got {rgb.shape} {rgb.dtype}')
    if channel not in TISSUE_CHANNELS:
        raise ValueError(f'detect_tissue: channel must be one of '
                         f'{TISSUE_CHANNELS}, got {channel!r}')
    if mpp is not None:
        if not mpp > 0:
            raise ValueError(f'detect_tissue: mpp must be > 0, got {mpp}')
        closing_px = int(round(closing_um / mpp))
        min_area_px = int(round(min_area_um2 / mpp**2))
        hole_area_px = int(round(hole_area_um2 / mpp**2))
    values = _channel(rgb, channel)
    lo, hi = _BOUNDS[channel]
    if values.size == 0 or np.ptp(values) == 0:
        thresh = lo
    else:
        thresh = float(filters.threshold_otsu(values))
    mask = values > min(max(thresh, lo), hi)
    if closing_px > 0:
        # Grey closing (reflected borders): tissue cut by the thumbnail edge
        # keeps its rim, unlike a closing that treats outside as glass.
        mask = morphology.closing(mask, morphology.disk(closing_px)) > 0
    mask = _remove_small(mask, min_area_px, holes=False)
    mask = _remove_small(mask, hole_area_px, holes=True)
    return np.asarray(mask, dtype=bool)


def load_tissue_mask(path: str,
                     size: Optional[Tuple[int, int]] = None,
                     slide_dimensions: Optional[Sequence[int]] = None,
                     aspect_tol: float = 0.02) -> np.ndarray:
    """Read a user-given tissue mask image (non-zero = tissue).

    Args:
        path (str): PNG/TIFF/... mask, any size; grey, RGB(A), palette or
            16-bit. A pixel is tissue when any of its channels is non-zero
            (alpha ignored).
        size (tuple, optional): (w, h) to resize to (nearest neighbour),
            e.g. the thumbnail's size.
        slide_dimensions (Sequence[int], optional): (W, H) of the slide;
            the mask's aspect ratio must match it within ``aspect_tol``.
        aspect_tol (float): Relative aspect tolerance. Defaults to 0.02.

    Returns:
        np.ndarray: (h, w) bool mask.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Unreadable image, or its aspect ratio does not match
            the slide's; the message names the file.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'tissue mask {path}: no such file')
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == 'P':
                img = img.convert('RGB')  # indices say nothing by themselves
            arr = np.asarray(img)
    except Exception as err:
        raise ValueError(f'tissue mask {path}: cannot read the image '
                         f'({type(err).__name__}: {err})') from err
    if arr.ndim == 3:
        if arr.shape[2] in (2, 4):
            arr = arr[..., :-1]  # drop alpha
        mask = (arr != 0).any(axis=2)
    elif arr.ndim == 2:
        mask = arr != 0
    else:
        raise ValueError(f'tissue mask {path}: expected a 2-D image, got '
                         f'shape {arr.shape}')
    h, w = mask.shape
    if slide_dimensions is not None:
        sw, sh = (int(v) for v in slide_dimensions)
        if abs((w / h) / (sw / sh) - 1) > aspect_tol:
            raise ValueError(
                f'tissue mask {path}: its aspect ratio ({w} x {h}) does not '
                f'match the slide ({sw} x {sh}); the mask must cover the '
                'whole slide')
    if size is not None and tuple(size) != (w, h):
        tw, th = (int(v) for v in size)
        # Nearest neighbour at pixel centres: output (i, j) takes the mask
        # pixel under its centre.
        ys = np.minimum(((np.arange(th) + 0.5) * h / th).astype(int), h - 1)
        xs = np.minimum(((np.arange(tw) + 0.5) * w / tw).astype(int), w - 1)
        mask = mask[ys[:, None], xs[None, :]]
    return np.ascontiguousarray(mask)
