"""The prompter over overlapping tiles, with cross-tile de-duplication."""
from typing import List, Optional, Sequence, Tuple

import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..utils.point_ops import point_nms
from .tiling import make_tiles, most_central_tile, pad_to_size

__all__ = ['TiledPrompter']


class TiledPrompter:
    """Nucleus points of an image of any size from a trained prompter.

    An image no larger than ``tile_size`` goes through the prompter in one
    pass (padded to a multiple of its stride). A larger one is cut into
    ``tile_size`` tiles overlapping by ``tile_overlap`` px; each tile keeps
    the points it owns (:func:`~.tiling.most_central_tile`), then a point
    NMS of radius ``nms_radius`` removes the duplicates of nuclei seen on
    both sides of an ownership border. Mask-aided filtering and the
    prompter's own point NMS happen inside ``prompter.predict``.

    Args:
        prompter (nn.Module): A :class:`NucleusPrompter` (or anything with
            ``stride`` and mmdet's ``predict(inputs, samples, rescale)``
            filling ``pred_instances.points/labels/scores``).
        tile_size (int): Largest side run in one pass; tile side otherwise.
        tile_overlap (int): Overlap of neighbouring tiles, pixels.
        batch_size (int): Tiles per prompter call.
        nms_radius (float, optional): Cross-tile point NMS radius, pixels;
            None takes the prompter's ``test_cfg.nms_radius`` (12 if unset).
    """

    def __init__(self,
                 prompter: nn.Module,
                 tile_size: int = 1024,
                 tile_overlap: int = 64,
                 batch_size: int = 2,
                 nms_radius: Optional[float] = None) -> None:
        if not 0 <= tile_overlap < tile_size:
            raise ValueError(f'prompter tile_overlap must be in [0, '
                             f'tile_size={tile_size}), got {tile_overlap}')
        if batch_size < 1:
            raise ValueError(f'prompter batch_size must be >= 1, got '
                             f'{batch_size}')
        self.prompter = prompter
        self.tile_size = int(tile_size)
        self.tile_overlap = int(tile_overlap)
        self.batch_size = int(batch_size)
        if nms_radius is None:
            nms_radius = (getattr(prompter, 'test_cfg', None)
                          or {}).get('nms_radius', 12.0)
        self.nms_radius = float(nms_radius)

    @torch.no_grad()
    def __call__(self,
                 img: Tensor,
                 offset: Tuple[int, int] = (0, 0)) -> InstanceData:
        """Points of one image (or of a region of a larger one).

        Args:
            img (Tensor): (3, h, w) float, normalised for the prompter
                (:func:`~.normalisation.part_input`), unpadded.
            offset (tuple[int, int]): (x0, y0) of ``img`` in the frame the
                points are returned in (a slide region's origin).

        Returns:
            InstanceData: ``points`` (N, 2) float32 x, y in that frame,
            ``labels`` (N,) long, ``scores`` (N,) float32.
        """
        h, w = img.shape[-2:]
        size = self.tile_size
        if max(h, w) <= size:
            result = self._run(img[None], [(0, 0)])[0]
        else:
            result = self._tiled(img)
        if offset != (0, 0):
            result.points = result.points + result.points.new_tensor(
                [float(offset[0]), float(offset[1])])
        return result

    def _tiled(self, img: Tensor) -> InstanceData:
        h, w = img.shape[-2:]
        tiles = make_tiles((h, w), self.tile_size,
                           self.tile_size - self.tile_overlap)
        boxes = tiles.tolist()
        parts: List[InstanceData] = []
        for start in range(0, len(boxes), self.batch_size):
            group = boxes[start:start + self.batch_size]
            # Every tile has the full size here (the image is larger).
            crops = torch.stack(
                [img[:, y1:y2, x1:x2] for x1, y1, x2, y2 in group])
            results = self._run(crops, [(x1, y1) for x1, y1, _, _ in group])
            for t, res in enumerate(results, start):
                # Each location is judged by the tile that sees it with the
                # most context.
                own = most_central_tile(res.points,
                                        tiles.to(res.points.device),
                                        (h, w)) == t
                parts.append(res[own])
        points = InstanceData.cat(parts)
        # Two tiles may see one nucleus on either side of their border.
        keep = point_nms(points.points, points.scores, self.nms_radius)
        return points[keep]

    def _run(self, tiles: Tensor,
             offsets: Sequence[Tuple[int, int]]) -> List[InstanceData]:
        """The prompter on same-size tiles (B, 3, th, tw); points shifted
        by ``offsets`` into the image frame."""
        th, tw = tiles.shape[-2:]
        stride = self.prompter.stride
        pad_hw = (-(-th // stride) * stride, -(-tw // stride) * stride)
        batch = pad_to_size(tiles, pad_hw)
        samples = [
            DetDataSample(
                metainfo=dict(
                    img_shape=(th, tw),
                    ori_shape=(th, tw),
                    pad_shape=pad_hw,
                    batch_input_shape=pad_hw,
                    scale_factor=(1.0, 1.0))) for _ in offsets
        ]
        out = self.prompter.predict(batch, samples, rescale=False)
        results = []
        for sample, (x0, y0) in zip(out, offsets):
            pred = sample.pred_instances
            points = pred.points.float() + pred.points.new_tensor(
                [x0, y0], dtype=torch.float32)
            results.append(
                InstanceData(
                    points=points,
                    labels=pred.labels.long(),
                    scores=pred.scores.float()))
        return results
