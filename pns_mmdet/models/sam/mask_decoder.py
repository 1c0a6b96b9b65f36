"""SAM mask decoder decoding many prompts of one image in one batch."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from segment_anything.modeling import MaskDecoder, TwoWayTransformer
from segment_anything.modeling.transformer import Attention
from torch import Tensor, nn

__all__ = ['SAMMaskDecoder']

# Prompts are decoded in chunks of at most this many image-token elements
# (N * h * w * C): large fresh allocations page-fault (slow on our VMs) and
# fall out of cache, while the chunk GEMMs stay large enough.
_CHUNK_ELEMENTS = 1 << 20


@MODELS.register_module()
class SAMMaskDecoder(MaskDecoder):
    """``segment_anything``'s ``MaskDecoder`` with a shared-image fast path.

    SAM's ``predict_masks`` copies the image embedding, the dense prompt
    embedding and the positional encoding once per prompt before the
    two-way transformer. :meth:`predict_single_masks` instead runs the
    transformer's computation itself (with its modules' weights) in token
    layout: the first layer's projections of the image tokens are computed
    once per image, the per-prompt attentions fold the projections of the
    many image tokens into the few prompt tokens, only the single-mask
    output (mask token 0, as PromptNucSeg uses) is formed, and the output
    upscaling runs channels-last as matrix products. The result and its
    gradients equal ``forward(..., multimask_output=False)`` up to float
    rounding.

    State-dict keys are those of the official checkpoints under
    ``mask_decoder.`` (the transformer is built here from its numbers).

    Args:
        transformer_dim (int): Channel dimension. Defaults to 256.
        transformer_depth (int): Two-way transformer layers. Defaults to 2.
        transformer_mlp_dim (int): Hidden size of its MLPs. Defaults to
            2048.
        transformer_num_heads (int): Attention heads. Defaults to 8.
        num_multimask_outputs (int): Extra mask tokens of the checkpoint
            (kept so official weights load). Defaults to 3.
        iou_head_depth (int): Layers of the IoU head. Defaults to 3.
        iou_head_hidden_dim (int): Hidden size of the IoU head. Defaults to
            256.
        frozen (bool): Freeze every parameter. Defaults to False.
    """

    def __init__(self,
                 transformer_dim: int = 256,
                 transformer_depth: int = 2,
                 transformer_mlp_dim: int = 2048,
                 transformer_num_heads: int = 8,
                 num_multimask_outputs: int = 3,
                 iou_head_depth: int = 3,
                 iou_head_hidden_dim: int = 256,
                 frozen: bool = False) -> None:
        super().__init__(
            transformer_dim=transformer_dim,
            transformer=TwoWayTransformer(
                depth=transformer_depth,
                embedding_dim=transformer_dim,
                mlp_dim=transformer_mlp_dim,
                num_heads=transformer_num_heads),
            num_multimask_outputs=num_multimask_outputs,
            iou_head_depth=iou_head_depth,
            iou_head_hidden_dim=iou_head_hidden_dim)
        self.frozen = frozen
        # The multimask hypernetworks (tokens 1..3) never contribute to the
        # single-mask output: freeze them so no trainable parameter is left
        # without a gradient (DDP would otherwise need
        # find_unused_parameters).
        for mlp in self.output_hypernetworks_mlps[1:]:
            mlp.requires_grad_(False)
        if frozen:
            self.requires_grad_(False)
            self.train(False)

    def train(self, mode: bool = True) -> 'SAMMaskDecoder':
        """Set train mode, except that a frozen decoder stays in eval."""
        return super().train(mode and not self.frozen)

    def predict_single_masks(self, image_embedding: Tensor, image_pe: Tensor,
                             sparse_prompt_embeddings: Tensor,
                             dense_prompt_embeddings: Tensor
                             ) -> Tuple[Tensor, Tensor]:
        """Decode one mask per prompt, all prompts sharing one image.

        Equals ``forward(..., multimask_output=False)`` (masks[:, 0] and
        iou[:, 0]) up to float rounding, with the same parameters and
        gradients.

        Args:
            image_embedding (Tensor): (1, C, h, w) embedding of the image.
            image_pe (Tensor): (1, C, h, w) dense positional encoding.
            sparse_prompt_embeddings (Tensor): (N, T, C) prompt tokens.
            dense_prompt_embeddings (Tensor): (1, C, h, w) (shared, e.g. the
                no-mask embedding) or (N, C, h, w).

        Returns:
            Tuple[Tensor, Tensor]: mask logits (N, 4h, 4w) on the decoder's
            low-resolution grid, and predicted IoU (N,).
        """
        if image_embedding.size(0) != 1 or image_pe.size(0) != 1:
            raise ValueError('predict_single_masks takes one image: '
                             'image_embedding and image_pe must have batch '
                             f'size 1, got {image_embedding.size(0)} and '
                             f'{image_pe.size(0)}')
        num_prompts = sparse_prompt_embeddings.size(0)
        output_tokens = torch.cat(
            [self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(
            num_prompts, -1, -1)
        tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)
        src = image_embedding + dense_prompt_embeddings
        _, _, h, w = src.shape
        keys = src.flatten(2).transpose(1, 2)  # (1 or N, hw, C)
        key_pe = image_pe.flatten(2).transpose(1, 2)  # (1, hw, C)
        shared = None
        if keys.size(0) == 1:
            # The first layer sees the same image tokens for every prompt:
            # project them once.
            shared = self._project_shared_keys(keys, key_pe)
        step = max(1, _CHUNK_ELEMENTS // (keys.size(1) * keys.size(2)))
        masks, ious = [], []
        for start in range(0, max(num_prompts, 1), step):
            chunk = slice(start, start + step)
            queries, chunk_keys = self._two_way_transformer(
                tokens[chunk], keys if shared is not None else keys[chunk],
                key_pe, shared)
            hyper_in = self.output_hypernetworks_mlps[0](queries[:, 1])
            masks.append(self._upscale_and_predict(chunk_keys, hyper_in, h,
                                                   w))
            ious.append(self.iou_prediction_head(queries[:, 0])[:, 0])
        if len(masks) == 1:
            return masks[0], ious[0]
        return torch.cat(masks), torch.cat(ious)

    def _project_shared_keys(self, keys: Tensor, key_pe: Tensor
                             ) -> Dict[str, Tensor]:
        """First-layer projections of image tokens shared by all prompts.

        Args:
            keys (Tensor): (1, L, C) image tokens.
            key_pe (Tensor): (1, L, C) their positional encoding.

        Returns:
            Dict[str, Tensor]: ``keys`` (1, L, C); the token-to-image keys
            ``k`` and values ``v`` (1, H, L, d); the image-to-token queries
            ``q`` (1, L, H, d).
        """
        layer = self.transformer.layers[0]
        t2i = layer.cross_attn_token_to_image
        i2t = layer.cross_attn_image_to_token
        keys_pe = keys + key_pe
        return dict(
            keys=keys,
            k=_split_heads(t2i.k_proj(keys_pe), t2i.num_heads).transpose(1, 2),
            v=_split_heads(t2i.v_proj(keys), t2i.num_heads).transpose(1, 2),
            q=_split_heads(i2t.q_proj(keys_pe), i2t.num_heads))

    def _two_way_transformer(self, tokens: Tensor, keys: Tensor,
                             key_pe: Tensor,
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
            shared (dict, optional): :meth:`_project_shared_keys` of image
                tokens common to all prompts. Defaults to None.

        Returns:
            Tuple[Tensor, Tensor]: the first two processed tokens (IoU and
            single-mask token) (N, 2, C), and the image tokens (N, L, C).
        """
        transformer = self.transformer
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

    def _upscale_and_predict(self, keys: Tensor, hyper_in: Tensor, h: int,
                             w: int) -> Tensor:
        """``output_upscaling`` and the hypernetwork product, channels last.

        A ConvTranspose2d with kernel 2 and stride 2 maps every input pixel
        to its own 2 x 2 output block, so it is a per-token linear layer
        C_in -> (2, 2, C_out); the sub-pixel layout is kept until the final
        (N, 4h, 4w) logits, which avoids transposing the big feature maps.

        Args:
            keys (Tensor): (N, h*w, C) image tokens from the transformer.
            hyper_in (Tensor): (N, C/8) hypernetwork output of mask token 0.
            h (int): Height of the token grid.
            w (int): Width of the token grid.

        Returns:
            Tensor: (N, 4h, 4w) mask logits.
        """
        deconv1, norm, act1, deconv2, act2 = self.output_upscaling
        n = keys.size(0)
        c1, c2 = deconv1.out_channels, deconv2.out_channels
        x = F.linear(keys, _deconv_as_linear_weight(deconv1),
                     deconv1.bias.repeat(4))
        # LayerNorm2d normalises over channels, here the last dim.
        x = F.layer_norm(
            x.view(n, h * w * 4, c1), (c1, ), norm.weight, norm.bias,
            norm.eps)
        x = act1(x)
        x = act2(F.linear(x, _deconv_as_linear_weight(deconv2),
                          deconv2.bias.repeat(4)))
        # (N, h*w*16, C/8) @ (N, C/8, 1): pixel (4y+2i+k, 4x+2j+m) is at
        # sub-pixel index (y, x, i, j, k, m).
        masks = torch.bmm(x.view(n, h * w * 16, c2), hyper_in.unsqueeze(2))
        masks = masks.view(n, h, w, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6)
        return masks.reshape(n, 4 * h, 4 * w)


def _deconv_as_linear_weight(deconv: nn.ConvTranspose2d) -> Tensor:
    """(C_in, C_out, 2, 2) weight -> (2 * 2 * C_out, C_in) linear weight
    whose output index is (i, j, c_out) for the output pixel (2y+i, 2x+j)."""
    return deconv.weight.permute(2, 3, 1, 0).reshape(-1, deconv.in_channels)


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
