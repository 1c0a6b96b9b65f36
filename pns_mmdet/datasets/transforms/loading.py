"""Sparse-aware annotation loading for images with hundreds of nuclei."""
import numpy as np
from mmdet.datasets.transforms import LoadAnnotations
from mmdet.registry import TRANSFORMS

from ..coco_utils import segmentation_to_pixels
from .mask_ops import bitmap_masks_nocopy

__all__ = ['LoadNucleusAnnotations']


@TRANSFORMS.register_module()
class LoadNucleusAnnotations(LoadAnnotations):
    """:class:`mmdet.datasets.transforms.LoadAnnotations`, faster masks.

    Same keys, flags and results as the parent (``with_bbox``,
    ``with_label``, ``with_mask``, ``poly2mask=True``, ...), but each mask
    is decoded straight from its RLE runs into a zero-initialised
    (N, H, W) array instead of decoding N full-size masks and stacking them
    (two N x H x W passes); untouched pages of that array are never
    materialised. On a 1000 x 1000 tile with ~600 nuclei this is roughly
    10x faster. ``poly2mask=False`` falls back to the parent.
    """

    def _load_masks(self, results: dict) -> None:
        if not self.poly2mask:
            return super()._load_masks(results)
        h, w = results['ori_shape']
        segs = self._process_masks(results)
        masks = np.zeros((len(segs), h, w), np.uint8)
        for i, seg in enumerate(segs):
            try:
                ys, xs = segmentation_to_pixels(seg, h, w)
            except ValueError as e:
                raise ValueError(f'{results.get("img_path")}: instance {i}:'
                                 f' {e}') from e
            masks[i, ys, xs] = 1
        results['gt_masks'] = bitmap_masks_nocopy(masks)
