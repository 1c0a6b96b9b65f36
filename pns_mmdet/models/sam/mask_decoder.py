"""SAM mask decoder decoding many prompts of one image in one batch."""
from typing import Tuple

import torch
from mmdet.registry import MODELS
from segment_anything.modeling import MaskDecoder, TwoWayTransformer
from torch import Tensor

__all__ = ['SAMMaskDecoder']


@MODELS.register_module()
class SAMMaskDecoder(MaskDecoder):
    """``segment_anything``'s ``MaskDecoder`` with a shared-image fast path.

    SAM's ``predict_masks`` copies the image embedding, the dense prompt
    embedding and the positional encoding once per prompt before the
    two-way transformer. :meth:`predict_single_masks` instead passes them
    with batch size 1 and lets broadcasting share them: the first
    transformer layer's projections of the image tokens are then computed
    once per image instead of once per prompt, and only the single-mask
    output (mask token 0, as PromptNucSeg uses) is formed. The result equals
    ``forward(..., multimask_output=False)``.

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
        # Batch size 1 here: the attention layers broadcast it against the
        # N prompt-token sets, so nothing is copied N times up front.
        src = image_embedding + dense_prompt_embeddings
        _, c, h, w = src.shape
        hs, src = self.transformer(src, image_pe, tokens)
        iou_token_out = hs[:, 0, :]
        mask_token_out = hs[:, 1, :]  # token 0 = single-mask output
        src = src.transpose(1, 2).reshape(src.size(0), c, h, w)
        upscaled = self.output_upscaling(src)  # (N, C/8, 4h, 4w)
        hyper_in = self.output_hypernetworks_mlps[0](mask_token_out)
        n, c_up, h_up, w_up = upscaled.shape
        masks = torch.bmm(
            hyper_in.unsqueeze(1), upscaled.reshape(n, c_up, h_up * w_up))
        iou_pred = self.iou_prediction_head(iou_token_out)[:, 0]
        return masks.reshape(n, h_up, w_up), iou_pred
