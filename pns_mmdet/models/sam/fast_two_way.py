"""SAM's two-way transformer in token layout, for many prompts per image.

``segment_anything``'s ``TwoWayTransformer`` works on one (image, prompt)
pair per batch row. These functions run the same computation with the
same modules' weights when many prompts share one image: the first
layer's projections of the image tokens are computed once
(:func:`project_shared_keys`), and the attentions between the few prompt
tokens and the many image tokens fold the projections of the image side
into the token side. Results and gradients equal SAM's up to float
rounding (tests/test_models/test_sam/test_mask_decoder.py).
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from segment_anything.modeling import TwoWayTransformer
from segment_anything.modeling.transformer import Attention
from torch import Tensor

__all__ = ['project_shared_keys', 'two_way_transformer']


def project_shared_keys(transformer: TwoWayTransformer, keys: Tensor,
                        key_pe: Tensor) -> Dict[str, Tensor]:
    """First-layer projections of image tokens shared by all prompts.

    Args:
        keys (Tensor): (1, L, C) image tokens.
        key_pe (Tensor): (1, L, C) their positional encoding.

    Returns:
        Dict[str, Tensor]: ``keys`` (1, L, C); the token-to-image keys
        ``k`` and values ``v`` (1, H, L, d); the image-to-token queries
        ``q`` (1, L, H, d).
    """
    layer = transformer.layers[0]
    t2i = layer.cross_attn_token_to_image
    i2t = layer.cross_attn_image_to_token
    keys_pe = keys + key_pe
    return dict(
        keys=keys,
        k=_split_heads(t2i.k_proj(keys_pe), t2i.num_heads).transpose(1, 2),
        v=_split_heads(t2i.v_proj(keys), t2i.num_heads).transpose(1, 2),
        q=_split_heads(i2t.q_proj(keys_pe), i2t.num_heads))

def two_way_transformer(transformer: TwoWayTransformer, tokens: Tensor,
                        keys: Tensor, key_pe: Tensor,
                        shared: Optional[Dict[str, Tensor]] = None
                        ) -> Tuple[Tensor, Tensor]:
    """``TwoWayTransformer.forward`` in token layout.

    Args:
        tokens (Tensor): (N, T, C) output and prompt tokens (also their
            positional encoding, as in SAM).
        keys (Tensor): (N, L, C) image tokens; ignored when ``shared``
            is given.
        key_pe (Tensor): (1, L, C) positional encoding of the image
            tokens.
        shared (dict, optional): :func:`project_shared_keys` of image
            tokens common to all prompts. Defaults to None.

    Returns:
        Tuple[Tensor, Tensor]: the first two processed tokens (IoU and
        single-mask token) (N, 2, C), and the image tokens (N, L, C).
    """
    queries = tokens
    for i, layer in enumerate(transformer.layers):
        first_shared = shared if i == 0 else None
        # Self-attention of the few tokens: cheap, the module is used.
        if layer.skip_first_layer_pe:
            queries = layer.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + tokens
            queries = queries + layer.self_attn(q=q, k=q, v=queries)
        queries = layer.norm1(queries)
        if first_shared is None:
            keys_pe = keys + key_pe
        else:
            keys, keys_pe = first_shared['keys'], None
        queries = layer.norm2(queries + _token_to_image(
            layer.cross_attn_token_to_image, queries + tokens, keys_pe,
            keys, first_shared))
        queries = layer.norm3(queries + layer.mlp(queries))
        keys = layer.norm4(
            _image_to_token(layer.cross_attn_image_to_token, keys_pe,
                            queries + tokens, queries, keys,
                            first_shared))
    # Only the IoU token and mask token 0 are used downstream, and the
    # final attention and norm act per token: skip the other tokens.
    queries = queries[:, :2]
    attn_out = _token_to_image(transformer.final_attn_token_to_image,
                               queries + tokens[:, :2], keys + key_pe,
                               keys)
    queries = transformer.norm_final_attn(queries + attn_out)
    return queries, keys.expand(tokens.size(0), -1, -1)


def _split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, L, H*d) -> (B, L, H, d) view."""
    return x.unflatten(2, (num_heads, -1))


def _softmax(x: Tensor) -> Tensor:
    """Softmax over a short last dim (the T prompt tokens), where
    ``Tensor.softmax`` is several times slower than these plain ops."""
    e = (x - x.amax(dim=-1, keepdim=True)).exp_()
    return e / e.sum(dim=-1, keepdim=True)


def _token_to_image(attn: Attention, q_in: Tensor, k_in: Optional[Tensor],
                    v_in: Tensor,
                    shared: Optional[Dict[str, Tensor]] = None) -> Tensor:
    """``attn(q=q_in, k=k_in, v=v_in)``: few prompt tokens attending to
    many image tokens.

    Args:
        attn (Attention): The attention module whose weights are used.
        q_in (Tensor): (N, T, C) tokens plus their positional encoding.
        k_in (Tensor, optional): (N, L, C) image tokens plus positional
            encoding (unused with ``shared``).
        v_in (Tensor): (N, L, C) image tokens (unused with ``shared``).
        shared (dict, optional): Projected keys ``k`` and values ``v``
            (1, H, L, d) of image tokens shared by all prompts. Defaults to
            None.

    Returns:
        Tensor: (N, T, C) attention output (after ``out_proj``).
    """
    n, t, _ = q_in.shape
    heads, dim = attn.num_heads, attn.internal_dim
    q = _split_heads(attn.q_proj(q_in), heads)  # (N, T, H, d)
    if shared is not None or heads * t >= dim:
        if shared is not None:
            # One key set for all prompts: the N*T queries form one
            # sequence.
            k, v = shared['k'], shared['v']
            q = q.reshape(1, n * t, heads, dim // heads)
        else:
            k = _split_heads(attn.k_proj(k_in), heads).transpose(1, 2)
            v = _split_heads(attn.v_proj(v_in), heads).transpose(1, 2)
        # Same default scale 1/sqrt(d) as SAM.
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k, v)
        return attn.out_proj(out.transpose(1, 2).reshape(n, t, dim))
    # Few tokens per prompt: move k_proj / v_proj to the token side,
    # q.(W_k x + b_k) = (W_k^T q).x + q.b_k and sum_l a_l W_v x_l =
    # W_v sum_l a_l x_l, so the (N, L, C) image tokens are read by two
    # (N, H*T, C) x (C, L) products instead of being projected to (N, L, D).
    c = k_in.size(2)
    q = q * (dim // heads)**-0.5
    w_k = attn.k_proj.weight.view(heads, -1, c)  # (H, d, C)
    q_abs = torch.einsum('nthd,hdc->nhtc', q, w_k).reshape(n, heads * t, c)
    # q.b_k is constant over the image tokens (no effect on the softmax);
    # it is kept so that b_k stays in the graph, as in SAM.
    q_bias = torch.einsum('nthd,hd->nht', q, attn.k_proj.bias.view(heads, -1))
    logits = torch.baddbmm(
        q_bias.reshape(n, heads * t, 1), q_abs, k_in.transpose(1, 2))
    probs = logits.softmax(dim=-1)  # (N, H*T, L)
    pooled = torch.bmm(probs, v_in).view(n, heads, t, c)
    w_v = attn.v_proj.weight.view(heads, -1, c)  # (H, d, C)
    out = torch.einsum('nhtc,hdc->nthd', pooled, w_v).reshape(n, t, dim)
    return attn.out_proj(out + attn.v_proj.bias)


def _image_to_token(attn: Attention, q_in: Optional[Tensor], k_in: Tensor,
                    v_in: Tensor, residual: Tensor,
                    shared: Optional[Dict[str, Tensor]] = None) -> Tensor:
    """``residual + attn(q=q_in, k=k_in, v=v_in)``: image tokens attending
    to the few prompt tokens.

    ``out_proj`` is folded into the per-prompt values (its input is a
    softmax-weighted sum of them), so the (N, L, C) output is one batched
    (L, H*T) x (H*T, C) product per prompt that also adds the residual.

    Args:
        attn (Attention): The attention module whose weights are used.
        q_in (Tensor, optional): (N, L, C) image tokens plus positional
            encoding (unused with ``shared``).
        k_in (Tensor): (N, T, C) tokens plus their positional encoding.
        v_in (Tensor): (N, T, C) tokens.
        residual (Tensor): (N, L, C) or shared (1, L, C) image tokens.
        shared (dict, optional): Projected queries ``q`` (1, L, H, d) of
            image tokens shared by all prompts. Defaults to None.

    Returns:
        Tensor: (N, L, C) updated image tokens (before the layer norm).
    """
    n, t, c = k_in.shape
    length = residual.size(1)
    heads, dim = attn.num_heads, attn.internal_dim
    k = _split_heads(attn.k_proj(k_in), heads) * (dim // heads)**-0.5
    v = _split_heads(attn.v_proj(v_in), heads)  # (N, T, H, d)
    # sum_h W_o,h sum_t a_ht v_ht + b_o = sum_{h,t} a_ht (W_o,h v_ht +
    # b_o / H), since every head's weights sum to 1.
    w_o = attn.out_proj.weight.view(c, heads, -1)  # (C, H, d)
    v_out = torch.einsum('nthd,chd->nhtc', v, w_o) + attn.out_proj.bias / heads
    if shared is not None or heads * t >= dim:
        if shared is not None:
            logits = torch.einsum('lhd,nthd->nlht', shared['q'][0], k)
        else:
            q = _split_heads(attn.q_proj(q_in), heads)  # (N, L, H, d)
            logits = torch.einsum('nlhd,nthd->nlht', q, k)
    else:
        # Few tokens: fold q_proj into the keys instead of projecting the
        # (N, L, C) image tokens.
        w_q = attn.q_proj.weight.view(heads, -1, c)  # (H, d, C)
        k_abs = torch.einsum('nthd,hdc->nhtc', k, w_q).reshape(
            n, heads * t, c)
        k_bias = torch.einsum('nthd,hd->nht', k,
                              attn.q_proj.bias.view(heads, -1))
        logits = torch.baddbmm(
            k_bias.reshape(n, 1, heads * t), q_in, k_abs.transpose(1, 2))
        logits = logits.view(n, length, heads, t)
    probs = _softmax(logits).reshape(n, length, heads * t)
    return torch.baddbmm(residual, probs, v_out.reshape(n, heads * t, c))
