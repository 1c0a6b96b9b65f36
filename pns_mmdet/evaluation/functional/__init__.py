from .detection_metrics import detection_scores, type_counts, type_f1_scores
from .instance_map import (instance_classes, paint_instance_masks, remap_label)
from .instance_metrics import (PQResult, aji, aji_from_overlaps, aji_plus,
                               aji_plus_from_overlaps, instance_metrics,
                               max_weight_unique_pairs, pq, pq_from_overlaps)
from .nucleus_stats import (INSTANCE_KEYS, image_instance_stats, nanmean,
                            summarize_instance_stats)
from .overlaps import InstanceOverlaps, pairwise_overlaps
from .point_matching import (PointPairing, greedy_point_matching,
                             pair_coordinates)

__all__ = [
    'remap_label', 'paint_instance_masks', 'instance_classes',
    'InstanceOverlaps', 'pairwise_overlaps', 'PQResult', 'aji', 'aji_plus',
    'pq', 'instance_metrics', 'aji_from_overlaps', 'aji_plus_from_overlaps',
    'pq_from_overlaps', 'max_weight_unique_pairs', 'PointPairing',
    'pair_coordinates', 'greedy_point_matching', 'detection_scores',
    'type_counts', 'type_f1_scores', 'image_instance_stats',
    'summarize_instance_stats', 'nanmean', 'INSTANCE_KEYS'
]
