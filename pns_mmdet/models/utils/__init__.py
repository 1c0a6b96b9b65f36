from .autocast import autocast_context, resolve_autocast_dtype
from .point_ops import (boxes_to_points, clip_points, point_nms,
                        points_to_boxes, points_to_grid, rescale_points)
from .prompts import build_point_prompts, sample_interior_points
from .tiling import (boxes_near_inner_edge, crop_masks, inner_tile_edges,
                     make_tiles, masks_to_sam_boxes, most_central_tile,
                     pad_to_size, paint_instances, points_in_tiles,
                     sam_to_mmdet_boxes, tile_starts,
                     upsampled_mask_patches)

__all__ = [
    'autocast_context', 'resolve_autocast_dtype', 'boxes_to_points',
    'clip_points', 'point_nms', 'points_to_boxes',
    'points_to_grid', 'rescale_points', 'build_point_prompts',
    'sample_interior_points', 'boxes_near_inner_edge', 'crop_masks',
    'inner_tile_edges', 'make_tiles', 'masks_to_sam_boxes',
    'most_central_tile', 'pad_to_size', 'paint_instances', 'points_in_tiles',
    'sam_to_mmdet_boxes', 'tile_starts', 'upsampled_mask_patches'
]
