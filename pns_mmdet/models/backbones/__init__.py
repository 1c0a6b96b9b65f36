from .litemedsam_tinyvit import TINYVIT_LEVELS, LiteMedSAMTinyViT
from .timm_feature_backbone import TimmFeatureBackbone

__all__ = ['LiteMedSAMTinyViT', 'TINYVIT_LEVELS', 'TimmFeatureBackbone']
