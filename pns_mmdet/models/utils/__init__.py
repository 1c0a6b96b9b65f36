from .point_ops import (anchor_grid, boxes_to_points, clip_points,
                        point_nms, points_to_boxes, points_to_grid,
                        rescale_points, sample_at_points)
from .prompts import (build_point_prompts, resolve_num_neg_prompts,
                      sample_interior_points, sample_training_prompts)

__all__ = [
    'boxes_to_points',
    'clip_points', 'point_nms', 'points_to_boxes', 'points_to_grid',
    'rescale_points', 'anchor_grid', 'sample_at_points',
    'build_point_prompts', 'sample_interior_points',
    'resolve_num_neg_prompts', 'sample_training_prompts'
]
