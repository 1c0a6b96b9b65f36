"""Point-distance match cost for Hungarian assignment of anchor points."""
from typing import Optional, Union

import torch
from mmdet.models.task_modules.assigners.match_cost import BaseMatchCost
from mmdet.registry import TASK_UTILS
from mmengine.structures import InstanceData
from torch import Tensor


@TASK_UTILS.register_module()
class PointL2Cost(BaseMatchCost):
    """Euclidean distance between predicted and ground-truth points.

    The cost is ``weight * ||p_i - g_j||_2`` in input-image pixels (as the
    upstream PromptNucSeg matcher, ``set_cost_point=0.1``). Combined with
    ``ClassificationCost`` in mmdet's ``HungarianAssigner`` it gives the
    paper's matching cost ``alpha * ||a_i - b_j|| - q_i(c_j)`` (Eq. 3).

    Args:
        weight (float): Cost weight (alpha). Defaults to 1.

    Example:
        >>> cost = PointL2Cost(weight=0.1)
        >>> pred = InstanceData(points=torch.tensor([[0., 0.], [3., 4.]]))
        >>> gt = InstanceData(points=torch.tensor([[0., 4.]]))
        >>> cost(pred, gt)
        tensor([[0.4000],
                [0.3000]])
    """

    def __init__(self, weight: Union[float, int] = 1.) -> None:
        super().__init__(weight=weight)

    def __call__(self,
                 pred_instances: InstanceData,
                 gt_instances: InstanceData,
                 img_meta: Optional[dict] = None,
                 **kwargs) -> Tensor:
        """Compute the cost matrix.

        Args:
            pred_instances (InstanceData): ``points`` (num_preds, 2), x, y in
                input-image pixels.
            gt_instances (InstanceData): ``points`` (num_gts, 2), same frame.
            img_meta (dict, optional): Unused.

        Returns:
            Tensor: Cost matrix of shape (num_preds, num_gts).
        """
        for name, inst in (('pred_instances', pred_instances),
                           ('gt_instances', gt_instances)):
            if 'points' not in inst:
                raise KeyError(f'PointL2Cost needs {name}.points, an (N, 2) '
                               'tensor of x, y pixel coordinates; got fields '
                               f'{list(inst.keys())}')
        pred_points = pred_instances.points.float()
        gt_points = gt_instances.points.to(pred_points)
        # The matmul-based cdist path loses precision for large coordinates
        # (1000 px images), so ask for the direct difference computation.
        dist = torch.cdist(
            pred_points,
            gt_points,
            compute_mode='donot_use_mm_for_euclid_dist')
        return dist * self.weight
