from .coco_results import CocoResultsWriter, instance_map_to_rles
from .geojson import instances_to_geojson, save_geojson
from .maps import (class_map_from_labels, save_class_png, save_instance_png,
                   save_png)
from .overlay import draw_instance_contours, instance_boundaries
from .polygons import instance_geometries, mask_to_geometry

__all__ = [
    'CocoResultsWriter', 'instance_map_to_rles', 'instances_to_geojson',
    'save_geojson', 'class_map_from_labels', 'save_class_png',
    'save_instance_png', 'save_png', 'draw_instance_contours',
    'instance_boundaries',
    'instance_geometries', 'mask_to_geometry'
]
