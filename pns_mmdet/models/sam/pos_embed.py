"""Resize SAM's position embeddings from the 1024-px pretraining size.

SAM's ViT is pretrained at 1024 px (a 64 x 64 token grid). PromptNucSeg runs
it at 256 px (16 x 16 tokens), so the absolute position embedding and the
relative-position tables of the global-attention blocks must be resized. The
upstream code does this on every forward pass; doing it once when weights are
loaded gives the same tensors (same interpolation modes) at no run-time cost.
"""
import torch.nn.functional as F
from torch import Tensor

__all__ = ['resize_abs_pos_embed', 'resize_rel_pos']


def resize_abs_pos_embed(pos_embed: Tensor, grid_size: int) -> Tensor:
    """Bicubically resize an absolute position embedding to a new grid.

    Matches the upstream PromptNucSeg forward-time resize (bicubic,
    ``align_corners=False``).

    Args:
        pos_embed (Tensor): (1, H, W, C) embedding on an H x W token grid.
        grid_size (int): Side of the target square token grid.

    Returns:
        Tensor: (1, grid_size, grid_size, C), same dtype; ``pos_embed``
        itself when it already has that grid.
    """
    if pos_embed.dim() != 4:
        raise ValueError('pos_embed must have shape (1, H, W, C), got '
                         f'{tuple(pos_embed.shape)}')
    if tuple(pos_embed.shape[1:3]) == (grid_size, grid_size):
        return pos_embed
    resized = F.interpolate(
        pos_embed.permute(0, 3, 1, 2).float(),
        size=(grid_size, grid_size),
        mode='bicubic',
        align_corners=False)
    return resized.permute(0, 2, 3, 1).to(pos_embed.dtype)


def resize_rel_pos(rel_pos: Tensor, length: int) -> Tensor:
    """Linearly resize a decomposed relative-position table.

    Identical to the interpolation in ``segment_anything``'s ``get_rel_pos``
    (linear, ``align_corners=False``), which SAM applies at run time when the
    table does not fit the token grid.

    Args:
        rel_pos (Tensor): (L, C) table, L = 2 * grid - 1.
        length (int): Target length (2 * new_grid - 1).

    Returns:
        Tensor: (length, C), same dtype; ``rel_pos`` itself when it already
        has that length.
    """
    if rel_pos.dim() != 2:
        raise ValueError('rel_pos must have shape (L, C), got '
                         f'{tuple(rel_pos.shape)}')
    if rel_pos.size(0) == length:
        return rel_pos
    resized = F.interpolate(
        rel_pos.float().t().unsqueeze(0), size=length, mode='linear')
    return resized.squeeze(0).t().contiguous().to(rel_pos.dtype)
