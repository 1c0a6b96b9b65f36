"""Tile geometry for sliding-window inference.

Frames and conventions used throughout the inference wing:

* A tile is ``(x1, y1, x2, y2)`` in image pixels with ``x2``/``y2``
  exclusive, clipped to the image. Tiles of a grid all have the nominal
  size, except where the image itself is smaller than a tile.
* Points are (x, y) with pixel centres at integer coordinates
  (docs/design.md), so the point (x, y) lies in pixel column x, row y.
* "SAM boxes" are ``(x1, y1, x2, y2)`` with *inclusive* maxima (the last
  column / row of the mask), as ``segment_anything``'s
  ``batched_mask_to_box`` produces and as upstream PromptNucSeg uses for the
  edge test and the box NMS. mmdet boxes (``pred_instances.bboxes``) use
  exclusive maxima (``x2 = last column + 1``), see
  :func:`~pns_mmdet.models.inference.stitching.sam_to_mmdet_boxes`.
* Ownership: a point belongs to the tile where it lies farthest from an
  inner tile edge (:func:`most_central_tile`); this partitions the image,
  so per-tile results are de-duplicated without a distance threshold.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'tile_starts', 'make_tiles', 'points_in_tiles', 'inner_tile_edges',
    'most_central_tile', 'ownership_borders', 'boxes_near_inner_edge',
    'pad_to_size'
]


def tile_starts(length: int, tile_size: int, stride: int) -> List[int]:
    """Start offsets of tiles covering ``[0, length)`` along one axis.

    Tiles start every ``stride`` pixels and the last tile is flush with the
    border (upstream ``crop_with_overlap``): 1000 px with tile 256 and stride
    192 gives ``[0, 192, 384, 576, 744]``; 500 px gives ``[0, 192, 244]``.
    An axis no longer than one tile has the single start 0.

    Args:
        length (int): Image size along the axis, pixels (>= 1).
        tile_size (int): Tile size, pixels (>= 1).
        stride (int): Step between tile starts, ``1 <= stride <= tile_size``
            (``tile_size - stride`` is the overlap).

    Returns:
        list[int]: Increasing start offsets.
    """
    if length < 1 or tile_size < 1:
        raise ValueError(f'tile_starts: length ({length}) and tile_size '
                         f'({tile_size}) must be >= 1')
    if not 1 <= stride <= tile_size:
        raise ValueError(f'tile_starts: stride must be in [1, tile_size='
                         f'{tile_size}] so tiles leave no gap, got {stride}')
    if length <= tile_size:
        return [0]
    starts = list(range(0, length - tile_size, stride))
    starts.append(length - tile_size)
    return starts


def make_tiles(img_hw: Sequence[int], tile_size: int, stride: int,
               device: torch.device = None) -> Tensor:
    """Grid of overlapping tiles over an image, in raster order.

    Args:
        img_hw (Sequence[int]): (H, W) of the image, pixels.
        tile_size (int): Tile side, pixels.
        stride (int): Step between tiles (tile_size - overlap), pixels.
        device (torch.device, optional): Device of the result.

    Returns:
        Tensor: (T, 4) long tiles ``x1, y1, x2, y2`` (exclusive maxima,
        clipped to the image), row by row (y outer, x inner).
    """
    h, w = int(img_hw[0]), int(img_hw[1])
    ys = tile_starts(h, tile_size, stride)
    xs = tile_starts(w, tile_size, stride)
    tiles = [(x, y, min(x + tile_size, w), min(y + tile_size, h))
             for y in ys for x in xs]
    return torch.tensor(tiles, dtype=torch.long, device=device)


def points_in_tiles(points: Tensor, tiles: Tensor) -> Tensor:
    """Which tiles contain which points.

    A point belongs to a tile when ``x1 <= x < x2`` and ``y1 <= y < y2``
    (upstream's prompt selection per tile).

    Args:
        points (Tensor): (N, 2) x, y in image pixels.
        tiles (Tensor): (T, 4) tiles x1, y1, x2, y2 (exclusive maxima).

    Returns:
        Tensor: (N, T) bool.
    """
    x = points[:, 0:1]
    y = points[:, 1:2]
    t = tiles.to(points.dtype)[None]
    return ((x >= t[..., 0]) & (x < t[..., 2]) & (y >= t[..., 1]) &
            (y < t[..., 3]))


def inner_tile_edges(tiles: Tensor, img_hw: Sequence[int]) -> Tensor:
    """Which tile edges lie inside the image (not on its border).

    Args:
        tiles (Tensor): (T, 4) tiles x1, y1, x2, y2 (exclusive maxima).
        img_hw (Sequence[int]): (H, W) of the image.

    Returns:
        Tensor: (T, 4) bool, True for the left, top, right, bottom edges
        that are not image borders.
    """
    h, w = int(img_hw[0]), int(img_hw[1])
    border = tiles.new_tensor([0, 0, w, h])
    return tiles != border[None]


def ownership_borders(starts: Sequence[int],
                      sizes: Sequence[int]) -> List[float]:
    """Where ownership passes from one tile to the next along one axis.

    Between tiles ``i`` and ``i + 1`` the border is the middle of their
    overlap in pixel-centre coordinates, ``(starts[i + 1] + starts[i] +
    sizes[i] - 1) / 2``: a pixel centre ``x <= border`` is at least as far
    from tile ``i``'s inner edge as from tile ``i + 1``'s, so tile ``i``
    owns it (ties to the lower index). The same rule cuts an image into
    engine tiles and a slide into processing tiles.

    Args:
        starts (Sequence[int]): Increasing tile starts (:func:`tile_starts`
            plus any offset).
        sizes (Sequence[int]): Tile lengths along the axis.

    Returns:
        list[float]: ``len(starts) - 1`` borders.
    """
    return [(starts[i + 1] + starts[i] + sizes[i] - 1) / 2
            for i in range(len(starts) - 1)]


def most_central_tile(points: Tensor, tiles: Tensor,
                      img_hw: Sequence[int]) -> Tensor:
    """For every point, the tile that owns it: along x and along y, the
    tile where it is farthest from that axis' inner tile edges.

    On a tile grid this is the tile whose context around the point is the
    most complete (the largest distance to any inner edge, ties to the
    lower index); the owned regions are axis-aligned, given by
    :func:`ownership_borders`, and partition the image, so per-tile
    detections are de-duplicated without any distance threshold.

    Args:
        points (Tensor): (N, 2) x, y in image pixels, inside the image.
        tiles (Tensor): (T, 4) a grid of :func:`make_tiles` (raster order)
            covering the image.
        img_hw (Sequence[int]): (H, W) of the image.

    Returns:
        Tensor: (N,) long tile index per point.
    """
    if len(points) == 0:
        return points.new_zeros((0, ), dtype=torch.long)
    h, w = int(img_hw[0]), int(img_hw[1])
    # Inside the image as points_in_tiles counts it: 0 <= x < W, 0 <= y < H.
    if bool(((points < 0) | (points >= points.new_tensor([w, h]))).any()):
        raise ValueError('most_central_tile: some points lie outside every '
                         'tile; the tiles must cover the image and the '
                         'points lie inside it')
    grid = tiles.cpu()
    ncols = int((grid[:, 1] == grid[0, 1]).sum())
    cols, rows = grid[:ncols], grid[::ncols]
    borders = []
    for line, lo, hi in ((cols, 0, 2), (rows, 1, 3)):
        starts = line[:, lo].tolist()
        sizes = (line[:, hi] - line[:, lo]).tolist()
        borders.append(points.new_tensor(ownership_borders(starts, sizes)))
    col = torch.bucketize(points[:, 0].contiguous(), borders[0])
    row = torch.bucketize(points[:, 1].contiguous(), borders[1])
    return row * ncols + col


def boxes_near_inner_edge(boxes: Tensor, tile: Sequence[int],
                          img_hw: Sequence[int], margin: float) -> Tensor:
    """Boxes within ``margin`` px of an edge of ``tile`` that is not an
    image border (upstream ``is_box_near_crop_edge``, atol 7 px).

    Args:
        boxes (Tensor): (N, 4) SAM boxes (inclusive maxima) in **image**
            pixels.
        tile (Sequence[int]): x1, y1, x2, y2 of the tile (exclusive maxima).
        img_hw (Sequence[int]): (H, W) of the image.
        margin (float): Distance tolerance in pixels.

    Returns:
        Tensor: (N,) bool, True for boxes to drop.
    """
    h, w = int(img_hw[0]), int(img_hw[1])
    boxes = boxes.float()
    tile_t = boxes.new_tensor([float(v) for v in tile])[None]
    image_t = boxes.new_tensor([0., 0., float(w), float(h)])[None]
    near_tile = (boxes - tile_t).abs() <= margin
    near_image = (boxes - image_t).abs() <= margin
    return (near_tile & ~near_image).any(dim=1)


def pad_to_size(img: Tensor, size_hw: Tuple[int, int],
                value: float = 0.) -> Tensor:
    """Pad the bottom/right of an image tensor up to ``size_hw``.

    Args:
        img (Tensor): (..., h, w) image, h <= H and w <= W.
        size_hw (tuple[int, int]): Target (H, W).
        value (float): Fill value (0 after mean/std normalisation is the
            mean colour, as mmdet's data preprocessor pads).

    Returns:
        Tensor: (..., H, W) padded image (``img`` itself when no padding).
    """
    h, w = img.shape[-2:]
    pad_h, pad_w = size_hw[0] - h, size_hw[1] - w
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f'pad_to_size: image {h}x{w} is larger than the '
                         f'target {size_hw[0]}x{size_hw[1]}')
    if pad_h == 0 and pad_w == 0:
        return img
    return F.pad(img, (0, pad_w, 0, pad_h), value=value)
