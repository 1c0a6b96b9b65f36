"""Slide backends behind :class:`~pns_mmdet.wsi.reader.SlideReader`.

Each backend (openslide, tiffslide, plain images) exposes the same small
surface: ``levels`` (dimensions and downsamples), ``mpp`` candidates,
``read(level, x, y, w, h)`` returning RGB(A) uint8 at a level,
``subpixel``/``offset`` for levels whose downsample is not a whole number,
and ``close``. TIFF metadata helpers (MPP from OME, ImageJ, Aperio or
resolution tags; truncation checks) live here too.
"""
import math
import os.path as osp
import re
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .errors import SlideReadError

__all__ = [
    'BACKEND_CLASSES', 'MPP_HINT', 'check_tiff_complete', 'is_tiff',
    'tiff_mpp'
]

# MPP values outside this range come from generic writers (72/96/300 dpi
# defaults give 85-350 µm/px), not from a microscope; they are treated as
# missing rather than trusted.
_MPP_RANGE = (0.01, 20.0)
_TIFF_MAGIC = (b'II*\x00', b'MM\x00*', b'II+\x00', b'MM\x00+')
MPP_HINT = ('pass --slide-mpp F (µm per level-0 pixel, e.g. 0.25 for a 40x '
             'scan, 0.5 for 20x; slide_mpp=F in Python)')


def _valid_mpp(value: Any) -> Optional[float]:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v) or not _MPP_RANGE[0] <= v <= _MPP_RANGE[1]:
        return None
    return v


def is_tiff(path: str) -> bool:
    with open(path, 'rb') as f:
        return f.read(4) in _TIFF_MAGIC


def tiff_mpp(path: str) -> Tuple[Optional[float], str]:
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


def check_tiff_complete(path: str) -> None:
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
        if not is_tiff(path):
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
        if is_tiff(path):
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
            self.mpp, self.mpp_found = tiff_mpp(path)
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


BACKEND_CLASSES = {
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
