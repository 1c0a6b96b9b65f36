"""SAM mask decoder decoding many prompts of one image in one batch."""
from typing import Tuple

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from segment_anything.modeling import MaskDecoder, TwoWayTransformer
from torch import Tensor, nn

from .fast_two_way import project_shared_keys, two_way_transformer

__all__ = ['SAMMaskDecoder']


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
        chunk_elements (int): Prompts are decoded in chunks of at most this
            many image-token elements (N * h * w * C): large fresh
            allocations page-fault and fall out of cache, while the chunk
            products stay large. Defaults to 2**20 (measured on 2-core CPU
            VMs; a tuning knob, not a correctness one).
    """

    def __init__(self,
                 transformer_dim: int = 256,
                 transformer_depth: int = 2,
                 transformer_mlp_dim: int = 2048,
                 transformer_num_heads: int = 8,
                 num_multimask_outputs: int = 3,
                 iou_head_depth: int = 3,
                 iou_head_hidden_dim: int = 256,
                 frozen: bool = False,
                 chunk_elements: int = 1 << 20) -> None:
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
        if int(chunk_elements) < 1:
            raise ValueError(f'SAMMaskDecoder: chunk_elements must be >= 1, '
                             f'got {chunk_elements}')
        self.chunk_elements = int(chunk_elements)
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
            shared = project_shared_keys(self.transformer, keys, key_pe)
        step = max(1, self.chunk_elements // (keys.size(1) * keys.size(2)))
        masks, ious = [], []
        for start in range(0, max(num_prompts, 1), step):
            chunk = slice(start, start + step)
            queries, chunk_keys = two_way_transformer(
                self.transformer, tokens[chunk],
                keys if shared is not None else keys[chunk], key_pe, shared)
            hyper_in = self.output_hypernetworks_mlps[0](queries[:, 1])
            masks.append(self._upscale_and_predict(chunk_keys, hyper_in, h,
                                                   w))
            ious.append(self.iou_prediction_head(queries[:, 0])[:, 0])
        if len(masks) == 1:
            return masks[0], ious[0]
        return torch.cat(masks), torch.cat(ious)

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
