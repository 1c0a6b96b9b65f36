"""A seeded synthetic whole slide: pyramidal tiled TIFF with known nuclei.

The slide has a few tissue islands on a white-grey glass background. Inside
the tissue, blocks of :data:`BLOCK` x :data:`BLOCK` pixels are painted by
the synthetic nucleus renderer of the training data
(:func:`pns_mmdet.datasets.synthetic.generate_tile`, one seeded stream per
block), so a model trained on the synthetic dataset sees the same kind of
nuclei. Nuclei whose centre falls outside the tissue are dropped.

The file is written block row by block row (level 0 tiles straight into
the TIFF, coarser levels through temporary raw files), so a 32k x 32k
slide needs a few hundred MB of RAM, not 3 GB. Each level is a tiled page
in the main IFD chain with resolution tags (centimetre unit), which
openslide opens as ``generic-tiff`` with ``openslide.mpp-x`` set.
"""
import os
import os.path as osp
import tempfile
from typing import Dict, Iterator, Sequence, Tuple, Union

import cv2
import numpy as np
from scipy import ndimage

from ..datasets.synthetic import generate_tile

__all__ = ['make_synthetic_slide', 'tissue_field', 'SYNTHETIC_RENDER_MPP',
           'BLOCK']

#: µm/px at which the synthetic renderer's nucleus sizes are defined
#: (PanNuke's 40x); slides at another MPP are rendered here and resized.
SYNTHETIC_RENDER_MPP = 0.25
#: Side (level-0 pixels) of the independently rendered blocks.
BLOCK = 512
_FIELD_SIDE = 512  # grid of the resolution-independent tissue field
_GLASS = (242.0, 241.0, 244.0)  # background colour of an empty slide
_MIN_NUCLEUS_PX = 6


def tissue_field(seed: int, islands: int = 4) -> np.ndarray:
    """Smooth field whose positive part is the tissue, in slide-relative
    coordinates.

    Sample ``(i, j)`` of the (S, S) field sits at relative position
    ``((j + 0.5) / S, (i + 0.5) / S)`` of the slide (x, y in [0, 1]), so the
    tissue layout and fraction are the same at every slide size.

    Args:
        seed (int): Layout seed.
        islands (int): Number of tissue islands. Defaults to 4.

    Returns:
        np.ndarray: (S, S) float32, > 0 inside tissue.
    """
    rng = np.random.default_rng([seed, 7919])
    s = _FIELD_SIDE
    v, u = (np.mgrid[0:s, 0:s].astype(np.float32) + 0.5) / s
    field = np.full((s, s), -1.0, np.float32)
    for _ in range(islands):
        cx, cy = rng.uniform(0.22, 0.78, 2)
        a = rng.uniform(0.14, 0.25)
        b = a * rng.uniform(0.55, 1.0)
        th = rng.uniform(0, np.pi)
        xr = (u - cx) * np.cos(th) + (v - cy) * np.sin(th)
        yr = -(u - cx) * np.sin(th) + (v - cy) * np.cos(th)
        rho = np.sqrt((xr / a)**2 + (yr / b)**2)
        ang = np.arctan2(yr / b, xr / a)
        bound = np.ones_like(ang)
        for f in (2, 3, 5):  # ragged outline
            bound += 0.12 * rng.uniform(-1, 1) * np.cos(
                f * ang + rng.uniform(0, 2 * np.pi))
        field = np.maximum(field, 1.0 - rho / bound)
    noise = rng.standard_normal((s // 16, s // 16)).astype(np.float32)
    noise = cv2.resize(noise, (s, s), interpolation=cv2.INTER_CUBIC)
    return field + 0.05 * noise


def _block_tissue(field: np.ndarray, x0: int, y0: int, w: int, h: int,
                  size: Tuple[int, int]) -> np.ndarray:
    """(h, w) bool tissue of a block, level-0 pixel centres sampled."""
    s = field.shape[0]
    xs = (np.arange(x0, x0 + w) + 0.5) / size[0] * s - 0.5
    ys = (np.arange(y0, y0 + h) + 0.5) / size[1] * s - 0.5
    # Linear interpolation never exceeds its support's maximum: a block
    # whose field samples are all <= 0 is glass without sampling it.
    fy0, fx0 = max(int(np.floor(ys[0])), 0), max(int(np.floor(xs[0])), 0)
    if field[fy0:int(np.ceil(ys[-1])) + 1,
             fx0:int(np.ceil(xs[-1])) + 1].max(initial=-1.0) <= 0:
        return np.zeros((h, w), bool)
    yy, xx = np.meshgrid(ys, xs, indexing='ij')
    return ndimage.map_coordinates(field, [yy, xx], order=1,
                                   mode='nearest') > 0


def _glass(seed: int) -> np.ndarray:
    """(BLOCK, BLOCK, 3) uint8 empty glass, shared by every block."""
    rng = np.random.default_rng([seed, 104729])
    img = np.asarray(_GLASS, np.float32) + rng.normal(0, 1.5,
                                                      (BLOCK, BLOCK, 1))
    return np.clip(img, 0, 255).round().astype(np.uint8)


def _render_block(field, glass, seed, bx, by, x0, y0, w, h, size, mpp,
                  tissue, num_nuclei) -> Tuple[np.ndarray, int]:
    """One block: (h, w, 3) uint8 and its number of nuclei."""
    rng = np.random.default_rng([seed, by, bx])
    mask = _block_tissue(field, x0, y0, w, h, size)
    glass = glass[:h, :w]
    if not mask.any():
        return glass, 0
    # Render at the renderer's own scale so nuclei keep physical sizes.
    f = mpp / SYNTHETIC_RENDER_MPP
    n = int(round(BLOCK * f))
    tile = generate_tile(rng, size=n, tissue=tissue, num_nuclei=num_nuclei)
    img, inst = tile['image'], tile['inst_map']
    if n != BLOCK:
        img = cv2.resize(img, (BLOCK, BLOCK), interpolation=cv2.INTER_AREA
                         if n > BLOCK else cv2.INTER_LINEAR)
        inst = cv2.resize(inst, (BLOCK, BLOCK),
                          interpolation=cv2.INTER_NEAREST)
    img, inst = img[:h, :w], inst[:h, :w]
    count = 0
    keep = mask.copy()
    ids = np.unique(inst)
    ids = ids[ids > 0]
    if len(ids):
        com = ndimage.center_of_mass(np.ones_like(inst), inst, ids)
        area = ndimage.sum_labels(np.ones_like(inst), inst, ids)
        lut = np.zeros(int(inst.max()) + 1, np.int8)  # 1 keep, -1 drop
        for i, (cy, cx), a in zip(ids, com, area):
            inside = mask[min(int(cy), h - 1), min(int(cx), w - 1)]
            ok = inside and a >= _MIN_NUCLEUS_PX
            lut[i] = 1 if ok else -1
            count += int(ok)
        state = lut[inst]
        keep = (mask & (state != -1)) | (state == 1)
    out = np.where(keep[..., None], img, glass)
    return out, count


class _RawLevel:
    """A coarser level buffered in a raw temporary file, written and read
    by bands with plain file I/O (a memory map would count every written
    page in the process' RSS: 800 MB for the level 1 of a 32k slide)."""

    def __init__(self, path: str, width: int, height: int):
        self.width, self.height = width, height
        self._row = width * 3
        self._f = open(path, 'w+b')

    def write_rows(self, y: int, band: np.ndarray) -> None:
        self._f.seek(y * self._row)
        self._f.write(np.ascontiguousarray(band[:, :self.width]).tobytes())

    def read_rows(self, y: int, rows: int) -> np.ndarray:
        rows = min(rows, self.height - y)
        self._f.seek(y * self._row)
        data = self._f.read(rows * self._row)
        return np.frombuffer(data, np.uint8).reshape(rows, self.width, 3)

    def close(self) -> None:
        self._f.close()


def _level_sizes(size: Tuple[int, int], tile: int) -> Sequence[Tuple[int,
                                                                     int]]:
    sizes = [size]
    while max(sizes[-1]) > 2 * tile:
        w, h = sizes[-1]
        sizes.append(((w + 1) // 2, (h + 1) // 2))
    return sizes


def _tiles(band: np.ndarray, tile: int, width: int) -> Iterator[np.ndarray]:
    """Row-major tiles of a band, padded white to full tiles."""
    for ty in range(0, band.shape[0], tile):
        for tx in range(0, width, tile):
            t = band[ty:ty + tile, tx:tx + tile]
            if t.shape[:2] != (tile, tile):
                pad = np.full((tile, tile, 3), 255, np.uint8)
                pad[:t.shape[0], :t.shape[1]] = t
                t = pad
            yield np.ascontiguousarray(t)


def _half(band: np.ndarray) -> np.ndarray:
    """2x area downsample; an odd last row/column is padded white."""
    h, w = band.shape[:2]
    if h % 2 or w % 2:
        band = np.pad(band, ((0, h % 2), (0, w % 2), (0, 0)),
                      constant_values=255)
    return cv2.resize(band, (band.shape[1] // 2, band.shape[0] // 2),
                      interpolation=cv2.INTER_AREA)


def make_synthetic_slide(out_tiff: str,
                         size: Union[int, Tuple[int, int]] = 4096,
                         mpp: float = SYNTHETIC_RENDER_MPP,
                         seed: int = 0,
                         tile: int = 256,
                         compression: str = 'jpeg',
                         quality: int = 90,
                         tissue: str = 'Breast',
                         islands: int = 4,
                         num_nuclei: Tuple[int, int] = (15, 45),
                         return_image: bool = False) -> Dict:
    """Write a synthetic H&E whole slide as a pyramidal tiled TIFF.

    Args:
        out_tiff (str): Output ``.tif``/``.tiff`` (written atomically).
        size (int | tuple): Level-0 side, or (W, H), pixels. Defaults to
            4096.
        mpp (float): µm per level-0 pixel written in the resolution tags.
            Defaults to :data:`SYNTHETIC_RENDER_MPP`.
        seed (int): Seed of the tissue layout and of every block.
        tile (int): TIFF tile side (multiple of 16, divides :data:`BLOCK`).
            Defaults to 256.
        compression (str): ``'jpeg'`` (small, lossy) or ``'deflate'``
            (lossless). Defaults to 'jpeg'.
        quality (int): JPEG quality. Defaults to 90.
        tissue (str): Synthetic tissue style (stain tint, class mix).
        islands (int): Number of tissue islands. Defaults to 4.
        num_nuclei (tuple): Nuclei per 256 x 256 block area (renderer
            scale). Defaults to (15, 45).
        return_image (bool): Also return the level-0 pixels as an array
            (tests only: this holds the whole slide in memory).

    Returns:
        dict: ``path``, ``size`` (W, H), ``mpp``, ``level_dimensions``,
        ``num_nuclei`` (nuclei drawn, centre inside tissue, at least 6 px),
        ``tissue_fraction`` (of level-0 pixels, from the tissue field), and
        ``image`` (H, W, 3) uint8 when ``return_image``.
    """
    w, h = (size, size) if np.isscalar(size) else size
    w, h = int(w), int(h)
    if w < 1 or h < 1:
        raise ValueError(f'make_synthetic_slide: size must be positive, '
                         f'got {size!r}')
    if not mpp > 0:
        raise ValueError(f'make_synthetic_slide: mpp must be > 0, got {mpp}')
    if tile % 16 or BLOCK % tile:
        raise ValueError(f'make_synthetic_slide: tile must be a multiple of '
                         f'16 dividing {BLOCK}, got {tile}')
    codecs = {'jpeg': ('jpeg', dict(level=quality)), 'deflate': ('zlib', {})}
    if compression not in codecs:
        raise ValueError(f'make_synthetic_slide: compression must be one of '
                         f'{sorted(codecs)}, got {compression!r}')
    import tifffile
    codec, codec_kw = codecs[compression]
    out_tiff = osp.abspath(out_tiff)
    field = tissue_field(seed, islands)
    glass = _glass(seed)
    levels = _level_sizes((w, h), tile)
    full = np.empty((h, w, 3), np.uint8) if return_image else None
    count = 0

    def level0_tiles(mm):
        nonlocal count
        for by, y0 in enumerate(range(0, h, BLOCK)):
            bh = min(BLOCK, h - y0)
            band = np.empty((bh, w, 3), np.uint8)
            for bx, x0 in enumerate(range(0, w, BLOCK)):
                bw = min(BLOCK, w - x0)
                band[:, x0:x0 + bw], n = _render_block(
                    field, glass, seed, bx, by, x0, y0, bw, bh, (w, h), mpp,
                    tissue, num_nuclei)
                count += n
            if full is not None:
                full[y0:y0 + bh] = band
            if mm is not None:
                mm.write_rows(y0 // 2, _half(band))
            yield from _tiles(band, tile, w)

    def level_tiles(src, mm):
        rows = 2 * BLOCK  # even, so bands halve exactly
        for y0 in range(0, src.height, rows):
            band = src.read_rows(y0, rows)
            if mm is not None:
                mm.write_rows(y0 // 2, _half(band))
            yield from _tiles(band, tile, src.width)

    os.makedirs(osp.dirname(out_tiff), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=osp.dirname(out_tiff),
                                     prefix='.synthetic_slide-') as tmp:
        maps = [
            _RawLevel(osp.join(tmp, f'level{i}.raw'), lw, lh)
            for i, (lw, lh) in enumerate(levels) if i > 0
        ]
        # tifffile wants a named file (atomic_write's has only an fd), so
        # the same write-then-rename is done through the temporary folder,
        # which is on the output's file system.
        part = osp.join(tmp, 'slide.tif')
        with tifffile.TiffWriter(part, bigtiff=w * h * 3 > 2**31) as tw:
            for i, (lw, lh) in enumerate(levels):
                per_cm = 1e4 / (mpp * w / lw)
                nxt = maps[i] if i < len(maps) else None
                data = level0_tiles(nxt) if i == 0 else level_tiles(
                    maps[i - 1], nxt)
                tw.write(data, shape=(lh, lw, 3), dtype=np.uint8,
                         tile=(tile, tile), photometric='rgb',
                         compression=codec, compressionargs=codec_kw,
                         resolution=(per_cm, per_cm),
                         resolutionunit='CENTIMETER',
                         subfiletype=1 if i else 0,
                         software='pns_mmdet make_synthetic_slide',
                         metadata=None)
        for m in maps:
            m.close()
        with open(part, 'rb') as f:
            os.fsync(f.fileno())  # survive a power loss, as atomic_write
        os.replace(part, out_tiff)
    s = field.shape[0]
    info = dict(path=out_tiff, size=(w, h), mpp=float(mpp),
                level_dimensions=[tuple(lv) for lv in levels],
                num_nuclei=count,
                tissue_fraction=float((field > 0).sum() / (s * s)))
    if full is not None:
        info['image'] = full
    return info
