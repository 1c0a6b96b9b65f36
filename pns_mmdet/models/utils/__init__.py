from .point_ops import (boxes_to_points, clip_points, point_nms,
                        points_to_boxes, points_to_grid, rescale_points)

__all__ = [
    'boxes_to_points', 'clip_points', 'point_nms', 'points_to_boxes',
    'points_to_grid', 'rescale_points'
]
