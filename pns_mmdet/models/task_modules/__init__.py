from .point_l2_cost import PointL2Cost

__all__ = ['PointL2Cost']
