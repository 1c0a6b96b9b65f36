from .aux_mask_head import AuxMaskHead
from .point_anchor_head import PointAnchorHead

__all__ = ['AuxMaskHead', 'PointAnchorHead']
