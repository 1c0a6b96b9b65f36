from .embedding_cache import EmbeddingCache
from .point_l2_cost import PointL2Cost

__all__ = ['EmbeddingCache', 'PointL2Cost']
