"""Packing of nucleus samples into DetDataSample."""
from typing import Sequence

import numpy as np
from mmdet.datasets.transforms import PackDetInputs
from mmdet.registry import TRANSFORMS

from .mask_ops import bitmap_masks_nocopy

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
    - When no instance is ignored (the usual case), ``gt_masks`` are passed
      through without the two full N x H x W copies the parent makes.

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

    def transform(self, results: dict) -> dict:
        """Pack like :class:`PackDetInputs` (see class docstring)."""
        flags = results.get('gt_ignore_flags')
        masks = results.get('gt_masks')
        fast = (flags is not None and masks is not None
                and hasattr(masks, 'masks') and not np.any(flags))
        if not fast:
            return super().transform(results)
        results = dict(results)  # do not remove keys of the caller's dict
        del results['gt_masks']
        packed = super().transform(results)
        sample = packed['data_samples']
        sample.gt_instances.masks = masks
        sample.ignored_instances.masks = bitmap_masks_nocopy(masks.masks[:0])
        return packed
