"""The processing-tile grid of a slide (model frame) and tile ownership."""
import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
from scipy import ndimage

from ..models.inference import ownership_borders, tile_starts

__all__ = ['ProcessingTile', 'processing_tiles', 'tiles_with_tissue']


@dataclass(frozen=True)
class ProcessingTile:
    """One processing tile, model frame (pixels at ``model_mpp``).

    Attributes:
        index (int): Raster-order index in the slide's grid (the journal
            key).
        x, y, w, h (int): The tile's pixels ``[x, x + w) x [y, y + h)``.
        core (tuple[float, float, float, float]): x0, y0, x1, y1 of the
            region it owns (half-open; +-inf on the region's outer sides).
    """
    index: int
    x: int
    y: int
    w: int
    h: int
    core: Tuple[float, float, float, float]

    def owns(self, px: float, py: float) -> bool:
        """Whether a point (model frame, pixel centres at integers) is in
        the core: the engine's rule, ties to the lower tile
        (:func:`~pns_mmdet.models.inference.ownership_borders`; the core
        is stored as pixel edges, half a pixel past those borders)."""
        x0, y0, x1, y1 = self.core
        return (x0 - 0.5 < px <= x1 - 0.5) and (y0 - 0.5 < py <= y1 - 0.5)


def _axis(lo: int, hi: int, size: int,
          overlap: int) -> List[Tuple[int, int, float, float]]:
    """Tiles along one axis: (start, length, core_lo, core_hi)."""
    length = hi - lo
    if length <= size:
        return [(lo, length, -math.inf, math.inf)]
    # The engine's grid and ownership rule (models/inference/tiling.py),
    # borders moved from pixel centres to pixel edges.
    starts = [lo + s for s in tile_starts(length, size, size - overlap)]
    borders = [
        b + 0.5 for b in ownership_borders(starts, [size] * len(starts))
    ]
    lows = [-math.inf] + borders
    highs = borders + [math.inf]
    return [(s, size, a, b) for s, a, b in zip(starts, lows, highs)]


def processing_tiles(region: Tuple[int, int, int, int], tile_size: int,
                     overlap: int) -> List[ProcessingTile]:
    """The processing-tile grid of a region, in raster order.

    Args:
        region (tuple[int, int, int, int]): x0, y0, x1, y1 (model frame,
            exclusive maxima).
        tile_size (int): Tile side (px); smaller regions get one tile of the
            region's size.
        overlap (int): Overlap of neighbouring tiles (px), < tile_size.

    Returns:
        list[ProcessingTile]: Row by row, left to right; the cores partition
        the plane.
    """
    if not 0 <= overlap < tile_size:
        raise ValueError(f'overlap must be in [0, tile_size={tile_size}), '
                         f'got {overlap}')
    x0, y0, x1, y1 = region
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f'empty region {region}')
    tiles = []
    for ys, h, cy0, cy1 in _axis(y0, y1, tile_size, overlap):
        for xs, w, cx0, cx1 in _axis(x0, x1, tile_size, overlap):
            tiles.append(
                ProcessingTile(len(tiles), xs, ys, w, h, (cx0, cy0, cx1, cy1)))
    return tiles


def tiles_with_tissue(tiles: Sequence[ProcessingTile], mask: np.ndarray,
                      s: float, scale: Tuple[float, float]
                      ) -> List[ProcessingTile]:
    """Tiles whose core (within the tile) touches tissue in the
    thumbnail mask (dilated one thumbnail pixel: it is coarse)."""
    mask = ndimage.binary_dilation(mask, iterations=1)
    th, tw = mask.shape
    keep = []
    for t in tiles:
        x0 = max(t.core[0], t.x) * s * scale[0]
        x1 = min(t.core[2], t.x + t.w) * s * scale[0]
        y0 = max(t.core[1], t.y) * s * scale[1]
        y1 = min(t.core[3], t.y + t.h) * s * scale[1]
        c0 = min(max(int(math.floor(x0)), 0), tw - 1)
        r0 = min(max(int(math.floor(y0)), 0), th - 1)
        c1 = max(min(int(math.ceil(x1)), tw), c0 + 1)
        r1 = max(min(int(math.ceil(y1)), th), r0 + 1)
        if mask[r0:r1, c0:c1].any():
            keep.append(t)
    return keep
