from .nucleus_instance_metric import NucleusInstanceMetric
from .point_detection_metric import PointDetectionMetric

__all__ = ['NucleusInstanceMetric', 'PointDetectionMetric']
