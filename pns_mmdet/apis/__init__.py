"""High-level inference helpers (imported on demand: ``pns_mmdet.apis``)."""
from .inference import NucleusInferencer, NucleusResult

__all__ = ['NucleusInferencer', 'NucleusResult']
