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
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from scipy import sparse

__all__ = [
    'SlideError', 'SlideReadError', 'SlideMetadataError', 'SlideReader',
    'open_slide', 'BACKENDS'
]

#: Backend names in the order :func:`open_slide` tries them.
BACKENDS = ('openslide', 'tiffslide', 'image')

# MPP values outside this range come from generic writers (72/96/300 dpi
# defaults give 85-350 µm/px), not from a microscope; they are treated as
# missing rather than trusted.
_MPP_RANGE = (0.01, 20.0)
# A level whose downsample exceeds the needed one by this relative amount
# still counts as "not coarser" (Aperio levels are 4.0003x, not 4x).
_LEVEL_TOL = 1e-3
# Thumbnails are built block by block so that no read exceeds about this
# many level pixels a side (single-level TIFFs have no small level).
_THUMB_BLOCK = 4096
_TIFF_MAGIC = (b'II*\x00', b'MM\x00*', b'II+\x00', b'MM\x00+')
_MPP_HINT = ('pass --slide-mpp F (µm per level-0 pixel, e.g. 0.25 for a 40x '
             'scan, 0.5 for 20x; slide_mpp=F in Python)')


class SlideError(RuntimeError):
    """Base class of the slide errors (catch it to skip a bad slide)."""


class SlideReadError(SlideError):
    """The file is missing, truncated, corrupt or of an unsupported format."""


class SlideMetadataError(SlideError, ValueError):
    """The slide lacks metadata needed to use it (its MPP)."""


def _valid_mpp(value: Any) -> Optional[float]:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v) or not _MPP_RANGE[0] <= v <= _MPP_RANGE[1]:
        return None
    return v


def _is_tiff(path: str) -> bool:
    with open(path, 'rb') as f:
        return f.read(4) in _TIFF_MAGIC


def _tiff_mpp(path: str) -> Tuple[Optional[float], str]:
    """MPP of a TIFF from OME, ImageJ or resolution tags (first page).

    Returns:
        tuple: (mpp or None, what was found, for the error message).
    """
    import tifffile
    from tifffile.tifffile import svs_description_metadata
    try:
        with tifffile.TiffFile(path) as tf:
            ome = tf.ome_metadata
            if ome:
                # PhysicalSizeX defaults to µm in the OME schema.
                m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', ome)
                unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', ome)
                if m and (unit is None or unit.group(1) in ('µm', 'um')):
                    mpp = _valid_mpp(m.group(1))
                    if mpp:
                        return mpp, 'OME PhysicalSizeX'
            page = tf.pages.first
            if tf.is_svs:  # Aperio: 'MPP = 0.2520' in the description
                meta = svs_description_metadata(page.description)
                mpp = _valid_mpp(meta.get('MPP'))
                if mpp:
                    return mpp, 'Aperio description'
            ij = tf.imagej_metadata or {}
            xres = page.tags.get('XResolution')
            if xres is None:
                return None, 'no resolution tags'
            num, den = xres.value
            ppu = num / den if den else 0.0
            tag = page.tags.get('ResolutionUnit')
            unit = 2 if tag is None else int(tag.value)  # TIFF default: inch
            if ij.get('unit') in ('micron', 'um', '\\u00B5m', 'µm'):
                per_um = ppu
            elif unit == 3:  # centimetre
                per_um = ppu / 1e4
            elif unit == 2:  # inch
                per_um = ppu / 25400.0
            else:
                return None, 'resolution tags without a unit'
            mpp = _valid_mpp(1.0 / per_um) if per_um > 0 else None
            if mpp is None:
                return None, (f'resolution tags giving '
                              f'{1.0 / per_um if per_um else 0:.4g} µm/px, '
                              'not a microscope resolution')
            return mpp, 'TIFF resolution tags'
    except Exception as err:  # metadata only: the read path reports errors
        return None, f'unreadable TIFF tags ({err})'


def _check_tiff_complete(path: str) -> None:
    """Raise if a TIFF's image data runs past the end of the file.

    A truncated TIFF often still opens (its directories come first) and
    some decoders return blank tiles for missing bytes, so the truncation
    is checked explicitly rather than left to the first failing tile.
    """
    import tifffile
    size = osp.getsize(path)
    try:
        with tifffile.TiffFile(path) as tf:
            for i, page in enumerate(tf.pages):
                offsets = np.asarray(page.dataoffsets, np.int64)
                counts = np.asarray(page.databytecounts, np.int64)
                if offsets.size and int((offsets + counts).max()) > size:
                    raise SlideReadError(
                        f'{path}: the file is truncated: image data of TIFF '
                        f'page {i} ends at byte '
                        f'{int((offsets + counts).max())} but the file has '
                        f'{size} bytes')
            # The directory chain must end inside the file (a cut file
            # loses its last directories silently otherwise).
            nxt = _next_ifd_offset(tf, tf.pages[len(tf.pages) - 1].offset,
                                   size)
            if nxt >= size:
                raise SlideReadError(
                    f'{path}: the file is truncated: TIFF directory '
                    f'{len(tf.pages)} starts at byte {nxt} but the file has '
                    f'{size} bytes')
    except SlideReadError:
        raise
    except Exception:
        # tifffile does not parse every vendor TIFF that openslide reads;
        # only positive evidence of truncation blocks the backends.
        return


def _next_ifd_offset(tf: Any, ifd_offset: int, size: int) -> int:
    """Offset stored after the TIFF directory at ``ifd_offset`` (0: last)."""
    import struct
    t = tf.tiff
    fh = tf.filehandle
    fh.seek(ifd_offset)
    (n, ) = struct.unpack(t.tagnoformat, fh.read(t.tagnosize))
    fh.seek(ifd_offset + t.tagnosize + n * t.tagsize)
    raw = fh.read(t.offsetsize)
    if len(raw) < t.offsetsize:
        return size  # the pointer itself is cut
    return struct.unpack(t.offsetformat, raw)[0]


class _OpenSlideBackend:
    """openslide.OpenSlide; level coordinates converted to level 0."""

    name = 'openslide'

    def __init__(self, path: str):
        import openslide
        if openslide.OpenSlide.detect_format(path) is None:
            raise LookupError('format not recognised by openslide')
        self._err = openslide.OpenSlideError
        self._slide = openslide.OpenSlide(path)
        self.level_dimensions = tuple(self._slide.level_dimensions)
        self.level_downsamples = tuple(self._slide.level_downsamples)
        props = self._slide.properties
        self.properties = dict(props)
        mpps = [props.get('openslide.mpp-x'), props.get('openslide.mpp-y')]
        self.mpp_found = f'openslide.mpp-x={mpps[0]}'
        self.mpp = _mean_mpp(mpps)

    def _loc(self, level: int, x: int, y: int) -> Tuple[int, int]:
        d = self.level_downsamples[level]
        # openslide takes the location in level 0; rounding keeps
        # location / downsample nearest to the wanted level pixel.
        return int(round(x * d)), int(round(y * d))

    def subpixel(self, level: int) -> bool:
        d = self.level_downsamples[level]
        return abs(d - round(d)) > 1e-12

    def offset(self, level: int, x: int, y: int) -> Tuple[float, float]:
        # openslide samples the level bilinearly at location / downsample
        # + j, which is fractional when the downsample is not an integer
        # (Aperio's 4.0003x): the returned grid is shifted by this much.
        d = self.level_downsamples[level]
        lx, ly = self._loc(level, x, y)
        return lx / d - x, ly / d - y

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        loc = self._loc(level, x, y)
        rgba = np.asarray(self._slide.read_region(loc, level, (w, h)))
        return _over_white(rgba)

    def close(self) -> None:
        self._slide.close()


class _TiffSlideBackend:
    """tiffslide.TiffSlide, for TIFF-like files openslide does not take."""

    name = 'tiffslide'

    def __init__(self, path: str):
        if not _is_tiff(path):
            raise LookupError('not a TIFF file')
        import tiffslide
        self._slide = tiffslide.TiffSlide(path)
        self.level_dimensions = tuple(self._slide.level_dimensions)
        self.level_downsamples = tuple(self._slide.level_downsamples)
        props = self._slide.properties
        self.properties = {k: v for k, v in props.items()}
        mpps = [props.get('tiffslide.mpp-x'), props.get('tiffslide.mpp-y')]
        self.mpp_found = f'tiffslide.mpp-x={mpps[0]}'
        self.mpp = _mean_mpp(mpps)
        # Decode one pixel now: a corrupt first tile fails at open time.
        self.read(0, 0, 0, 1, 1)

    def subpixel(self, level: int) -> bool:
        return False  # whole level pixels, see read()

    def offset(self, level: int, x: int, y: int) -> Tuple[float, float]:
        return 0.0, 0.0

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        d = self.level_downsamples[level]
        # tiffslide truncates location / downsample; ceil(x * d) / d lies in
        # [x, x + 1 / d), so it truncates to exactly x.
        loc = (int(math.ceil(x * d - 1e-9)), int(math.ceil(y * d - 1e-9)))
        arr = self._slide.read_region(loc, level, (w, h), as_array=True)
        return _to_rgb(np.asarray(arr), self.name)

    def close(self) -> None:
        self._slide.close()


class _ImageBackend:
    """Plain images: PNG/JPEG whole via Pillow, TIFF by region via zarr."""

    name = 'image'

    def __init__(self, path: str):
        self.properties: Dict[str, Any] = {}
        self._tiff = None
        if _is_tiff(path):
            import tifffile
            import zarr
            self._tiff = tifffile.TiffFile(path)
            series = self._tiff.series[0]
            self._levels = []
            for i in range(len(series.levels)):
                arr = zarr.open_array(series.aszarr(level=i), mode='r')
                if arr.dtype != np.uint8 or not (
                        arr.ndim == 2 or
                        (arr.ndim == 3 and arr.shape[2] in (1, 3, 4))):
                    raise ValueError(
                        f'expected an 8-bit grey/RGB(A) TIFF (Y, X[, S]), '
                        f'got shape {arr.shape} {arr.dtype}; convert it to '
                        '8-bit RGB first')
                self._levels.append(arr)
            self.mpp, self.mpp_found = _tiff_mpp(path)
        else:
            from PIL import Image

            from ..datasets.io import load_image
            with Image.open(path) as img:
                dpi = img.info.get('dpi')
            self._levels = [load_image(path)]
            self.mpp, self.mpp_found = None, 'no dpi in the image'
            if dpi and dpi[0]:
                self.mpp = _valid_mpp(25400.0 / float(dpi[0]))
                self.mpp_found = f'dpi {float(dpi[0]):.4g}'
        dims = [(int(a.shape[1]), int(a.shape[0])) for a in self._levels]
        self.level_dimensions = tuple(dims)
        self.level_downsamples = tuple(
            (dims[0][0] / d[0] + dims[0][1] / d[1]) / 2 for d in dims)
        # Decode one pixel now: a corrupt first tile fails at open time.
        self.read(0, 0, 0, 1, 1)

    def subpixel(self, level: int) -> bool:
        return False

    def offset(self, level: int, x: int, y: int) -> Tuple[float, float]:
        return 0.0, 0.0

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        return _to_rgb(np.asarray(self._levels[level][y:y + h, x:x + w]),
                       self.name)

    def close(self) -> None:
        if self._tiff is not None:
            self._tiff.close()
        self._levels = []


_BACKEND_CLASSES = {
    'openslide': _OpenSlideBackend,
    'tiffslide': _TiffSlideBackend,
    'image': _ImageBackend,
}


def _mean_mpp(values: Sequence[Any]) -> Optional[float]:
    vals = [_valid_mpp(v) for v in values if v is not None]
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def _over_white(rgba: np.ndarray) -> np.ndarray:
    """RGBA (not premultiplied, openslide's output) composited on white."""
    rgb = rgba[..., :3]
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha[..., None].astype(np.float32) / 255.0
    out = rgb.astype(np.float32) * a + 255.0 * (1.0 - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _to_rgb(arr: np.ndarray, backend: str) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.dtype != np.uint8:
        raise ValueError(f'{backend} returned {arr.dtype} pixels; only 8-bit '
                         'slides are supported')
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        return _over_white(arr)
    return np.ascontiguousarray(arr[..., :3])


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
        if mpp is None and backend.name != 'image' and _is_tiff(path):
            mpp, found2 = _tiff_mpp(path)
            found = f'{found}; {found2}'
        if mpp is None:
            backend.close()
            raise SlideMetadataError(
                f'{path}: no usable microns-per-pixel (MPP) in the slide '
                f'metadata (backend {backend.name}: {found}); {_MPP_HINT}')
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
    if _is_tiff(path):
        _check_tiff_complete(path)
    reasons: List[str] = []
    for name in [backend] if backend else BACKENDS:
        try:
            impl = _BACKEND_CLASSES[name](path)
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
