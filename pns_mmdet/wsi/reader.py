"""One reader interface for whole slides and plain images.

Backends, tried in this order by :func:`open_slide`:

- ``'openslide'``: openslide-python with the binary of the ``openslide-bin``
  wheel (SVS, NDPI, MRXS, SCN, Ventana, generic tiled TIFF, DICOM ...);
- ``'tiffslide'``: the pure-Python fallback for TIFF-like files openslide
  rejects (or cannot decode);
- ``'image'``: plain PNG/JPEG/BMP (decoded once, whole) and TIFFs neither
  slide library opens (read by region through tifffile's zarr store, so a
  large TIFF is never decoded whole).

Frames: the *level-0 frame* is slide pixels at pyramid level 0 (what QuPath
shows). :meth:`SlideReader.read_region` takes its box in the frame of a
requested resolution ``mpp`` (µm/px, e.g. the model's ``data_mpp``): with
``s = mpp / slide.mpp``, model pixel ``(x, y)`` covers level-0 pixels
``[x * s, (x + 1) * s)``. Pixel ``i`` is the unit square ``[i, i + 1)``, so
resampling maps pixel centres ``i + 0.5`` exactly; a region does not depend
on the tile grid it was cut from, which keeps neighbouring processing tiles
consistent across their seams.

A slide without a usable MPP is an error (:class:`SlideMetadataError`) unless
the caller gives ``slide_mpp``: a guessed magnification silently changes
nucleus sizes by 2x, which is the most reported WSI failure of the peers.
"""
import math
import os
import os.path as osp
from typing import Any, List, Optional

import cv2
import numpy as np
from scipy import sparse

from .errors import SlideError, SlideMetadataError, SlideReadError
from .slide_backends import (BACKEND_CLASSES, MPP_HINT, check_tiff_complete,
                             is_tiff, tiff_mpp)

__all__ = [
    'SlideError', 'SlideReadError', 'SlideMetadataError', 'SlideReader',
    'open_slide', 'BACKENDS'
]

#: Backend names in the order :func:`open_slide` tries them.
BACKENDS = ('openslide', 'tiffslide', 'image')

# A level whose downsample exceeds the needed one by this relative amount
# still counts as "not coarser" (Aperio levels are 4.0003x, not 4x).
_LEVEL_TOL = 1e-3
# Thumbnails are built block by block so that no read exceeds about this
# many level pixels a side (single-level TIFFs have no small level).
_THUMB_BLOCK = 4096

def _resample_matrix(start: float, n_out: int, ratio: float,
                     win_start: int, win_len: int) -> sparse.csr_matrix:
    """(n_out, win_len) weights mapping a source window to output pixels.

    Output pixel ``j`` covers source interval ``[start + j * ratio,
    start + (j + 1) * ratio)`` (source pixel ``k`` = ``[k, k + 1)``). For
    ``ratio >= 1`` the weights are the overlap lengths (area averaging, what
    ``cv2.INTER_AREA`` does for whole images); for ``ratio < 1`` they are
    linear interpolation at the output pixel centre (``cv2.INTER_LINEAR``
    with half-pixel centres). Unlike cv2.resize, ``start`` may be
    fractional, so the geometry is exact for any region.

    Args:
        start (float): Source coordinate of the output's left edge.
        n_out (int): Number of output pixels.
        ratio (float): Source pixels per output pixel.
        win_start (int): Source index of the window's first pixel.
        win_len (int): Window length; it must cover the support.
    """
    j = np.arange(n_out, dtype=np.float64)
    if ratio >= 1.0:
        a = start + j * ratio
        b = a + ratio
        k = np.floor(a)[:, None] + np.arange(int(math.ceil(ratio)) + 1)
        w = np.clip(np.minimum(b[:, None], k + 1) - np.maximum(a[:, None], k),
                    0, None) / ratio
    else:
        c = start + (j + 0.5) * ratio - 0.5
        k0 = np.floor(c)
        f = c - k0
        k = np.stack([k0, k0 + 1], axis=1)
        w = np.stack([1.0 - f, f], axis=1)
    cols = (k - win_start).astype(np.int64)
    keep = w > 0
    if (cols[keep] < 0).any() or (cols[keep] >= win_len).any():
        raise AssertionError('resampling window too small')  # a bug here
    rows = np.broadcast_to(np.arange(n_out)[:, None], k.shape)
    return sparse.csr_matrix((w[keep].astype(np.float32),
                              (rows[keep], cols[keep])),
                             shape=(n_out, win_len))


class SlideReader:
    """An open slide or image, read by region at a physical resolution.

    Attributes:
        path (str): The file.
        backend (str): ``'openslide'``, ``'tiffslide'`` or ``'image'``.
        dimensions (tuple[int, int]): (W, H) of level 0, pixels.
        level_count (int): Number of pyramid levels.
        level_dimensions (tuple): (W, H) per level.
        level_downsamples (tuple): Level-0 pixels per level pixel.
        mpp (float): µm per level-0 pixel (from the slide, or the
            ``slide_mpp`` override).
        mpp_source (str): Where ``mpp`` came from (for run reports).
        properties (dict): Backend metadata (strings).

    Readers are picklable: a copy re-opens the file with the same backend
    and MPP (one handle per DataLoader worker; slide handles are not
    shareable across processes).
    """

    def __init__(self, path: str, backend: Any,
                 slide_mpp: Optional[float] = None):
        self.path = path
        self._impl = backend
        self.backend = backend.name
        self.level_dimensions = tuple(
            (int(w), int(h)) for w, h in backend.level_dimensions)
        self.level_downsamples = tuple(
            float(d) for d in backend.level_downsamples)
        self.level_count = len(self.level_dimensions)
        self.dimensions = self.level_dimensions[0]
        self.properties = backend.properties
        self._slide_mpp = slide_mpp
        if slide_mpp is not None:
            self.mpp = float(slide_mpp)
            self.mpp_source = 'slide_mpp argument'
            return
        mpp, found = backend.mpp, backend.mpp_found
        if mpp is None and backend.name != 'image' and is_tiff(path):
            mpp, found2 = tiff_mpp(path)
            found = f'{found}; {found2}'
        if mpp is None:
            backend.close()
            raise SlideMetadataError(
                f'{path}: no usable microns-per-pixel (MPP) in the slide '
                f'metadata (backend {backend.name}: {found}); {MPP_HINT}')
        self.mpp = float(mpp)
        self.mpp_source = f'{backend.name} metadata'

    # -- life cycle ---------------------------------------------------------
    def close(self) -> None:
        if self._impl is not None:
            self._impl.close()
            self._impl = None

    def __enter__(self) -> 'SlideReader':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return dict(path=self.path, backend=self.backend, mpp=self.mpp)

    def __setstate__(self, state: dict) -> None:
        other = open_slide(state['path'], slide_mpp=state['mpp'],
                           backend=state['backend'])
        self.__dict__.update(other.__dict__)
        self.mpp_source = 'copied reader'

    def __repr__(self) -> str:
        return (f'SlideReader({self.path!r}, backend={self.backend!r}, '
                f'dimensions={self.dimensions}, mpp={self.mpp:.4g}, '
                f'levels={self.level_count})')

    # -- reading ------------------------------------------------------------
    def best_level(self, downsample: float) -> int:
        """Coarsest level that is still at least as fine as ``downsample``.

        Args:
            downsample (float): Wanted level-0 pixels per output pixel.
        """
        best = 0
        for i, d in enumerate(self.level_downsamples):
            if d <= downsample * (1 + _LEVEL_TOL) and \
                    d > self.level_downsamples[best]:
                best = i
        return best

    def _read_level(self, level: int, x: int, y: int, w: int,
                    h: int) -> np.ndarray:
        """(h, w, 3) uint8 of level pixels, white outside the level."""
        if self._impl is None:
            raise SlideReadError(f'{self.path}: the reader is closed')
        lw, lh = self.level_dimensions[level]
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, lw), min(y + h, lh)
        if x0 >= x1 or y0 >= y1:
            return np.full((h, w, 3), 255, np.uint8)
        try:
            inner = self._impl.read(level, x0, y0, x1 - x0, y1 - y0)
        except Exception as err:
            raise SlideReadError(
                f'{self.path}: cannot read region x={x0} y={y0} w={x1 - x0} '
                f'h={y1 - y0} of level {level} ({self.backend}): '
                f'{type(err).__name__}: {err}') from err
        if inner.shape != (y1 - y0, x1 - x0, 3):
            raise SlideReadError(
                f'{self.path}: {self.backend} returned shape {inner.shape} '
                f'for a {x1 - x0}x{y1 - y0} region of level {level}')
        if (x0, y0, x1, y1) == (x, y, x + w, y + h):
            return inner
        out = np.full((h, w, 3), 255, np.uint8)
        out[y0 - y:y1 - y, x0 - x:x1 - x] = inner
        return out

    def read_region(self, x: int, y: int, w: int, h: int,
                    mpp: Optional[float] = None) -> np.ndarray:
        """Read a region at the physical resolution ``mpp``.

        Args:
            x (int): Left edge, pixels of the ``mpp`` frame (model frame).
            y (int): Top edge, same frame.
            w (int): Width in output pixels (> 0).
            h (int): Height in output pixels (> 0).
            mpp (float, optional): µm/px of the output; the slide's own MPP
                (level 0) by default.

        Returns:
            np.ndarray: (h, w, 3) uint8 RGB. It is read from the finest
            pyramid level not coarser than needed and resampled (area
            averaging down, linear up); parts outside the slide are white.
        """
        if self._impl is None:
            raise SlideReadError(f'{self.path}: the reader is closed')
        w, h = int(w), int(h)
        if w <= 0 or h <= 0:
            raise ValueError(f'read_region: w and h must be > 0, got {w}x{h}')
        mpp = self.mpp if mpp is None else float(mpp)
        if not mpp > 0 or not math.isfinite(mpp):
            raise ValueError(f'read_region: mpp must be > 0, got {mpp}')
        scale = mpp / self.mpp  # level-0 pixels per output pixel
        level = self.best_level(scale)
        ratio = scale / self.level_downsamples[level]  # level px per out px
        lx, ly = x * ratio, y * ratio
        whole = not self._impl.subpixel(level)  # level pixels as stored
        if whole and abs(ratio - 1) < 1e-9 and lx == int(lx) and \
                ly == int(ly):
            return self._read_level(level, int(lx), int(ly), w, h)
        if whole and ratio >= 1 and _is_int(lx) and _is_int(ly) and \
                _is_int(lx + w * ratio) and _is_int(ly + h * ratio):
            # Whole-pixel window: cv2's area resize is exactly the overlap
            # average of _resample_matrix, and faster.
            wx0, wy0 = int(round(lx)), int(round(ly))
            win = self._read_level(level, wx0, wy0,
                                   int(round(lx + w * ratio)) - wx0,
                                   int(round(ly + h * ratio)) - wy0)
            return cv2.resize(win, (w, h), interpolation=cv2.INTER_AREA)
        return self._read_resampled(level, lx, ly, w, h, ratio)

    def _read_resampled(self, level: int, lx: float, ly: float, w: int,
                        h: int, ratio: float) -> np.ndarray:
        """Exact-geometry resampling for fractional level coordinates."""
        wx0, wy0 = int(math.floor(lx)) - 1, int(math.floor(ly)) - 1
        wx1 = int(math.ceil(lx + w * ratio)) + 1
        wy1 = int(math.ceil(ly + h * ratio)) + 1
        win = self._read_level(level, wx0, wy0, wx1 - wx0, wy1 - wy0)
        # Window pixel i sits at level coordinate wx0 + i + fx (fx = 0
        # unless the backend resampled it); shifting the start by -fx keeps
        # the output on the exact level-0 geometry.
        fx, fy = self._impl.offset(level, max(wx0, 0), max(wy0, 0))
        my = _resample_matrix(ly - fy, h, ratio, wy0, wy1 - wy0)
        mx = _resample_matrix(lx - fx, w, ratio, wx0, wx1 - wx0)
        wh, ww = win.shape[:2]
        tmp = my @ win.reshape(wh, ww * 3).astype(np.float32)  # (h, ww*3)
        tmp = tmp.reshape(h, ww, 3).transpose(1, 0, 2).reshape(ww, h * 3)
        out = (mx @ tmp).reshape(w, h, 3).transpose(1, 0, 2)
        return np.ascontiguousarray(
            np.clip(np.rint(out), 0, 255).astype(np.uint8))

    def thumbnail(self, max_side: int) -> np.ndarray:
        """Whole slide downsampled so that its longer side is ``max_side``.

        Built block by block (never a full-resolution array), from the
        coarsest suitable level.

        Returns:
            np.ndarray: (h, w, 3) uint8 RGB with ``max(h, w) == max_side``
            (or the level-0 size when that is smaller); pixel ``(i, j)``
            covers level-0 pixels ``[j * s, (j + 1) * s)`` with
            ``s = max(W, H) / max(w, h)``.
        """
        max_side = int(max_side)
        if max_side <= 0:
            raise ValueError(f'thumbnail: max_side must be > 0, got '
                             f'{max_side}')
        W, H = self.dimensions
        scale = max(1.0, max(W, H) / max_side)
        tw = max(1, int(round(W / scale)))
        th = max(1, int(round(H / scale)))
        mpp = self.mpp * scale
        level = self.best_level(scale)
        ratio = scale / self.level_downsamples[level]
        block = max(1, int(_THUMB_BLOCK / max(ratio, 1.0)))
        out = np.empty((th, tw, 3), np.uint8)
        for y in range(0, th, block):
            for x in range(0, tw, block):
                bw, bh = min(block, tw - x), min(block, th - y)
                out[y:y + bh, x:x + bw] = self.read_region(x, y, bw, bh, mpp)
        return out


def _is_int(v: float) -> bool:
    return abs(v - round(v)) < 1e-6


def open_slide(path: str,
               slide_mpp: Optional[float] = None,
               backend: Optional[str] = None) -> SlideReader:
    """Open a whole slide or a plain image.

    Args:
        path (str): Slide (SVS, NDPI, MRXS, SCN, tiled TIFF, ...) or image
            (PNG, JPEG, TIFF).
        slide_mpp (float, optional): µm per level-0 pixel; overrides the
            metadata (needed when the file has none).
        backend (str, optional): Force one of :data:`BACKENDS`; by default
            they are tried in that order.

    Returns:
        SlideReader: The open reader (close it, or use ``with``).

    Raises:
        SlideReadError: Missing, unreadable, truncated or unsupported file;
            the message names the file and what each backend said.
        SlideMetadataError: No usable MPP and no ``slide_mpp``.
        ValueError: Bad ``slide_mpp`` or ``backend``.
    """
    path = os.fspath(path)
    if slide_mpp is not None:
        v = float(slide_mpp)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f'slide_mpp must be a positive number of µm/px, '
                             f'got {slide_mpp!r}')
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got '
                         f'{backend!r}')
    if not osp.exists(path):
        raise SlideReadError(f'{path}: no such file')
    if not osp.isfile(path):
        raise SlideReadError(f'{path}: not a file')
    if is_tiff(path):
        check_tiff_complete(path)
    reasons: List[str] = []
    for name in [backend] if backend else BACKENDS:
        try:
            impl = BACKEND_CLASSES[name](path)
        except LookupError as err:  # not this backend's format
            reasons.append(f'{name}: {err}')
            continue
        except Exception as err:
            reasons.append(f'{name}: {type(err).__name__}: {err}')
            continue
        return SlideReader(path, impl, slide_mpp)
    raise SlideReadError(
        f'{path}: cannot open as a slide or image (unreadable, truncated or '
        f'unsupported format): ' + '; '.join(reasons))
