"""Tile geometry and mask stitching for sliding-window inference.

Frames and conventions used throughout:

* A tile is ``(x1, y1, x2, y2)`` in image pixels with ``x2``/``y2``
  exclusive, clipped to the image. Tiles of a grid all have the nominal
  size, except where the image itself is smaller than a tile.
* Points are (x, y) with pixel centres at integer coordinates
  (docs/design.md), so the point (x, y) lies in pixel column x, row y.
* "SAM boxes" are ``(x1, y1, x2, y2)`` with *inclusive* maxima (the last
  column / row of the mask), as ``segment_anything``'s
  ``batched_mask_to_box`` produces and as upstream PromptNucSeg uses for the
  edge test and the box NMS. mmdet boxes (``pred_instances.bboxes``) use
  exclusive maxima (``x2 = last column + 1``): :func:`sam_to_mmdet_boxes`.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    'tile_starts', 'make_tiles', 'points_in_tiles', 'inner_tile_edges',
    'most_central_tile', 'masks_to_sam_boxes', 'sam_to_mmdet_boxes',
    'boxes_near_inner_edge', 'crop_masks', 'paint_instances',
    'upsampled_mask_patches', 'pad_to_size'
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


def most_central_tile(points: Tensor, tiles: Tensor,
                      img_hw: Sequence[int]) -> Tensor:
    """For every point, the containing tile where it is farthest from an
    inner tile edge.

    This is the tile whose context around the point is the most complete;
    it partitions the image (every pixel is owned by exactly one tile), so
    it de-duplicates per-tile detections without any distance threshold.
    Ties go to the tile listed first.

    Args:
        points (Tensor): (N, 2) x, y in image pixels, inside the image.
        tiles (Tensor): (T, 4) tiles covering the image.
        img_hw (Sequence[int]): (H, W) of the image.

    Returns:
        Tensor: (N,) long tile index per point.
    """
    if len(points) == 0:
        return points.new_zeros((0, ), dtype=torch.long)
    inside = points_in_tiles(points, tiles)
    if not bool(inside.any(dim=1).all()):
        raise ValueError('most_central_tile: some points lie outside every '
                         'tile; the tiles must cover the image and the '
                         'points lie inside it')
    t = tiles.to(points.dtype)[None]
    # Distance from pixel centre (x, y) to each edge of its tile; x2/y2 are
    # exclusive, so the last pixel column x2 - 1 is at distance 0 from it.
    dist = torch.stack([
        points[:, 0:1] - t[..., 0], points[:, 1:2] - t[..., 1],
        t[..., 2] - 1 - points[:, 0:1], t[..., 3] - 1 - points[:, 1:2]
    ], dim=-1)
    inner = inner_tile_edges(tiles, img_hw)[None]
    dist = torch.where(inner, dist, torch.full_like(dist, float('inf')))
    centrality = dist.min(dim=-1).values
    centrality = torch.where(inside, centrality,
                             torch.full_like(centrality, -float('inf')))
    return centrality.argmax(dim=1)


def masks_to_sam_boxes(masks: Tensor) -> Tensor:
    """Tight boxes of binary masks with inclusive maxima.

    Args:
        masks (Tensor): (N, H, W) bool masks.

    Returns:
        Tensor: (N, 4) long ``x1, y1, x2, y2`` where x2/y2 are the last
        mask column/row; empty masks get ``(0, 0, 0, 0)`` (as
        ``segment_anything``'s ``batched_mask_to_box``).
    """
    n, h, w = masks.shape
    if n == 0:
        return masks.new_zeros((0, 4), dtype=torch.long)
    cols = masks.any(dim=1)  # (N, W)
    rows = masks.any(dim=2)  # (N, H)
    xs = torch.arange(w, device=masks.device)
    ys = torch.arange(h, device=masks.device)
    big = max(h, w)
    x1 = torch.where(cols, xs, big).min(dim=1).values
    x2 = torch.where(cols, xs, -1).max(dim=1).values
    y1 = torch.where(rows, ys, big).min(dim=1).values
    y2 = torch.where(rows, ys, -1).max(dim=1).values
    boxes = torch.stack([x1, y1, x2, y2], dim=1)
    empty = ~cols.any(dim=1)
    return boxes.masked_fill(empty[:, None], 0)


def sam_to_mmdet_boxes(boxes: Tensor) -> Tensor:
    """Convert inclusive-max boxes to mmdet's exclusive-max float boxes.

    Args:
        boxes (Tensor): (N, 4) x1, y1, x2, y2 with inclusive maxima.

    Returns:
        Tensor: (N, 4) float32 x1, y1, x2 + 1, y2 + 1.
    """
    out = boxes.float().clone()
    out[:, 2:] += 1
    return out


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


def crop_masks(masks: Tensor, boxes: Tensor) -> List[Tensor]:
    """Cut each mask to its box, so a kept mask costs its box, not H x W.

    Args:
        masks (Tensor): (N, H, W) bool masks.
        boxes (Tensor): (N, 4) SAM boxes (inclusive maxima) in the masks'
            frame.

    Returns:
        list[Tensor]: N bool patches of shape (y2 - y1 + 1, x2 - x1 + 1)
        (copies, so the full stack can be freed).
    """
    patches = []
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.tolist()):
        patches.append(mask[y1:y2 + 1, x1:x2 + 1].clone())
    return patches


def paint_instances(patches: Sequence[Tensor], boxes: Tensor,
                    img_hw: Sequence[int],
                    device: torch.device = None) -> Tensor:
    """Paint mask patches into an instance map; later patches win overlaps.

    Instance ``i`` (0-based) gets id ``i + 1``, so pass the patches in
    ascending score order to let higher scores overwrite lower ones
    (upstream's painting order).

    Args:
        patches (Sequence[Tensor]): N bool patches, patch i of shape
            (y2 - y1 + 1, x2 - x1 + 1) of ``boxes[i]``.
        boxes (Tensor): (N, 4) SAM boxes (inclusive maxima), image pixels.
        img_hw (Sequence[int]): (H, W) of the map.
        device (torch.device, optional): Device of the map.

    Returns:
        Tensor: (H, W) int32 instance map, 0 = background.
    """
    h, w = int(img_hw[0]), int(img_hw[1])
    inst_map = torch.zeros((h, w), dtype=torch.int32, device=device)
    for i, (patch, (x1, y1, x2, y2)) in enumerate(zip(patches,
                                                      boxes.tolist())):
        region = inst_map[y1:y2 + 1, x1:x2 + 1]
        if region.shape != patch.shape:
            raise ValueError(f'paint_instances: patch {i} has shape '
                             f'{tuple(patch.shape)} but its box '
                             f'{(x1, y1, x2, y2)} inside a {h}x{w} image '
                             f'covers {tuple(region.shape)}')
        region[patch.to(region.device)] = i + 1
    return inst_map


def upsampled_mask_patches(low_logits: Tensor, out_hw: Tuple[int, int],
                           threshold: float,
                           valid_hw: Tuple[int, int] = None
                           ) -> Tuple[Tensor, List[Tensor]]:
    """Threshold bilinearly upsampled mask logits, only around each mask.

    Equals ``F.interpolate(low_logits[:, None], out_hw, mode='bilinear',
    align_corners=False)[:, 0, :vh, :vw] > threshold`` followed by
    :func:`masks_to_sam_boxes` and :func:`crop_masks`, without building the
    (N, H, W) stack: an upsampled pixel is a convex combination of its 2 x 2
    low-resolution neighbours, so it can only exceed the threshold next to
    a low-resolution pixel that does. Each mask's window (its low-resolution
    box plus a margin that keeps the interpolation neighbours, hence the
    values, identical) is upsampled alone.

    Args:
        low_logits (Tensor): (N, h, w) decoder logits.
        out_hw (tuple[int, int]): (H, W) of the full upsampling, integer
            multiples of (h, w).
        threshold (float): Mask logit threshold.
        valid_hw (tuple[int, int], optional): Keep only the top-left
            (vh, vw) region (a tile's valid part). Defaults to ``out_hw``.

    Returns:
        tuple[Tensor, list[Tensor]]: (N, 4) long SAM boxes (inclusive
        maxima, zeros for empty masks) in the output frame, and N bool
        patches of the box size (empty (0, 0) patches for empty masks).
    """
    n, h, w = low_logits.shape
    out_h, out_w = out_hw
    if out_h % h or out_w % w:
        raise ValueError(f'upsampled_mask_patches: output {out_hw} is not '
                         f'an integer multiple of the logits ({h}, {w})')
    sy, sx = out_h // h, out_w // w
    vh, vw = valid_hw if valid_hw is not None else out_hw
    pos = low_logits > threshold
    low_boxes = masks_to_sam_boxes(pos).tolist()
    nonempty = pos.flatten(1).any(dim=1).tolist()
    boxes = torch.zeros((n, 4), dtype=torch.long)
    patches: List[Tensor] = []
    empty = low_logits.new_zeros((0, 0), dtype=torch.bool)
    for i in range(n):
        if not nonempty[i]:
            patches.append(empty)
            continue
        jx1, jy1, jx2, jy2 = low_boxes[i]
        # Two low-res pixels of margin: the upsampled window then has the
        # same interpolation neighbours (and values) as the full upsampling
        # wherever it can exceed the threshold.
        ax, bx = max(jx1 - 2, 0), min(jx2 + 3, w)
        ay, by = max(jy1 - 2, 0), min(jy2 + 3, h)
        up = F.interpolate(
            low_logits[i, None, None, ay:by, ax:bx],
            size=((by - ay) * sy, (bx - ax) * sx),
            mode='bilinear',
            align_corners=False)[0, 0] > threshold
        # Window -> output frame, cut to the valid region.
        oy, ox = ay * sy, ax * sx
        up = up[:max(0, vh - oy), :max(0, vw - ox)]
        if not bool(up.any()):
            patches.append(empty)
            continue
        rows = torch.nonzero(up.any(dim=1)).flatten()
        cols = torch.nonzero(up.any(dim=0)).flatten()
        y1, y2 = int(rows[0]), int(rows[-1])
        x1, x2 = int(cols[0]), int(cols[-1])
        patches.append(up[y1:y2 + 1, x1:x2 + 1].clone())
        boxes[i] = torch.tensor([x1 + ox, y1 + oy, x2 + ox, y2 + oy])
    return boxes, patches


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
