"""SAM ViT block: window padding after the projections, fused attention."""
from typing import Tuple

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import (Block, get_rel_pos,
                                                     window_partition,
                                                     window_unpartition)
from torch import Tensor

__all__ = ['PaddedWindowBlock', 'decomposed_rel_pos_bias']


def decomposed_rel_pos_bias(q: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor,
                            size: Tuple[int, int]) -> Tensor:
    """SAM's decomposed relative-position term as an additive mask.

    ``add_decomposed_rel_pos`` adds ``q . R_h`` and ``q . R_w`` to the
    attention logits; returned on its own, it is the ``attn_mask`` of
    ``F.scaled_dot_product_attention``.

    Args:
        q (Tensor): (B, heads, L, d) unscaled queries, L = h * w.
        rel_pos_h (Tensor): (2h - 1, d) relative positions along y.
        rel_pos_w (Tensor): (2w - 1, d) relative positions along x.
        size (tuple[int, int]): (h, w) of the query and key grid.

    Returns:
        Tensor: (B, heads, L, L) bias in the dtype of ``q``.
    """
    b, heads, length, dim = q.shape
    h, w = size
    r_q = q.reshape(b * heads, h, w, dim)
    rh = get_rel_pos(h, h, rel_pos_h).to(q.dtype)
    rw = get_rel_pos(w, w, rel_pos_w).to(q.dtype)
    rel_h = torch.einsum('bhwc,hkc->bhwk', r_q, rh)
    rel_w = torch.einsum('bhwc,wkc->bhwk', r_q, rw)
    bias = rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
    return bias.reshape(b, heads, length, length)


class PaddedWindowBlock(Block):
    """``segment_anything``'s ViT block with the window padding done after
    the linear layers and the attention fused: same result, about a third
    fewer multiply-adds at a 256-px input and no (L, L) logits in Python.

    At 256 px SAM's ViT has 16 x 16 tokens and 14 x 14 windows, so every
    window block pads the grid to 28 x 28 and runs its qkv and output
    projections on 784 tokens, 528 of them padding. A padding token is zero
    after the (zero) padding, so its q, k, v are exactly the qkv bias, and
    its attention output is discarded. This block computes the projections
    on the 256 real tokens only and fills the padding's q, k, v with the
    bias, so every real token sees exactly the same keys and values (the
    padded ones included, with their relative positions) as in ``Block``.
    Differentiable: the bias fill receives the padding's gradient, as the
    bias does in ``Block``.

    Attention (window and global blocks) runs through
    ``F.scaled_dot_product_attention`` on 4-D (B, heads, L, d) inputs with
    the relative-position term as the additive mask
    (:func:`decomposed_rel_pos_bias`), which lets PyTorch pick its fused
    CPU / GPU kernels.
    """

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) tokens -> (B, H, W, C) tokens."""
        ws = self.window_size
        _, h, w, _ = x.shape
        attn = self.attn
        shortcut = x
        qkv = attn.qkv(self.norm1(x))  # (B, H, W, 3C), real tokens only
        pad_hw = None
        if ws > 0:
            pad_h, pad_w = (ws - h % ws) % ws, (ws - w % ws) % ws
            if pad_h or pad_w:
                fill = (attn.qkv.bias if attn.qkv.bias is not None else
                        qkv.new_zeros(qkv.shape[-1])).to(qkv.dtype)
                full = fill.expand(qkv.shape[0], h + pad_h, w + pad_w,
                                   qkv.shape[-1]).clone()
                full[:, :h, :w] = qkv
                qkv = full
            qkv, pad_hw = window_partition(qkv, ws)  # no further padding
        n, gh, gw, _ = qkv.shape
        q, k, v = qkv.reshape(n, gh * gw, 3, attn.num_heads,
                              -1).permute(2, 0, 3, 1, 4).unbind(0)
        bias = None
        if attn.use_rel_pos:
            bias = decomposed_rel_pos_bias(q, attn.rel_pos_h,
                                           attn.rel_pos_w, (gh, gw))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, scale=attn.scale)
        out = out.permute(0, 2, 1, 3).reshape(n, gh, gw, -1)
        if ws > 0:
            out = window_unpartition(out, ws, pad_hw, (h, w))
        x = shortcut + attn.proj(out)
        return x + self.mlp(self.norm2(x))
