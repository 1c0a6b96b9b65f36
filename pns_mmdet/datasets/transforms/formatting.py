"""Packing of nucleus samples into DetDataSample."""
from typing import Sequence

from mmdet.datasets.transforms import PackDetInputs
from mmdet.registry import TRANSFORMS

__all__ = ['PackNucleusInputs']


@TRANSFORMS.register_module()
class PackNucleusInputs(PackDetInputs):
    """:class:`PackDetInputs` that also packs nucleus points and tissue.

    - ``gt_points`` ((N, 2) float32 x, y from ``NucleusPointsFromMasks``)
      becomes ``gt_instances.points`` (ignored instances go to
      ``ignored_instances.points``, like boxes and labels).
    - ``gt_seg_map`` becomes ``gt_sem_seg`` ((1, H, W) uint8), as in the
      parent class.
    - ``tissue`` is in the default ``meta_keys`` (None when unknown).

    Args:
        meta_keys (Sequence[str]): keys copied to the sample metainfo.
            Defaults to mmdet's keys plus ``'tissue'``.
    """
    mapping_table = dict(PackDetInputs.mapping_table, gt_points='points')

    def __init__(
        self,
        meta_keys: Sequence[str] = ('img_id', 'img_path', 'ori_shape',
                                    'img_shape', 'scale_factor', 'flip',
                                    'flip_direction', 'tissue')
    ) -> None:
        super().__init__(meta_keys=meta_keys)
