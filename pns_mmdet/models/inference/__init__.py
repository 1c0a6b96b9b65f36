"""Sliding-window inference: the one engine every path runs on.

image -> :class:`TiledPrompter` (points) -> :class:`TiledDecoder` (mask
candidates per tile) -> :func:`stitch_instances` (instances + instance map)
-> :func:`rescale_instances`. The oracle (ground-truth points) is the same
decoder with ``policy='oracle'``. See docs/design.md.
"""
from .mask_patches import (crop_masks, masks_to_sam_boxes, paint_instances,
                           sam_to_mmdet_boxes, upsampled_mask_patches)
from .normalisation import part_input
from .stitching import class_map, rescale_instances, stitch_instances
from .tiled_decoder import DECODE_POLICIES, MaskCandidates, TiledDecoder
from .tiled_prompter import TiledPrompter
from .tiling import (boxes_near_inner_edge, inner_tile_edges, make_tiles,
                     most_central_tile, ownership_borders, pad_to_size,
                     points_in_tiles, tile_starts)

__all__ = [
    'TiledPrompter', 'TiledDecoder', 'MaskCandidates', 'DECODE_POLICIES',
    'stitch_instances', 'rescale_instances', 'class_map', 'part_input',
    'tile_starts', 'make_tiles', 'points_in_tiles', 'inner_tile_edges',
    'most_central_tile', 'ownership_borders', 'boxes_near_inner_edge',
    'pad_to_size',
    'masks_to_sam_boxes', 'sam_to_mmdet_boxes', 'crop_masks',
    'paint_instances', 'upsampled_mask_patches'
]
