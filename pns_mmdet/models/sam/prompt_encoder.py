"""SAM prompt encoder, frozen by default (as in PromptNucSeg)."""
from typing import Sequence

from mmdet.registry import MODELS
from segment_anything.modeling import PromptEncoder

__all__ = ['SAMPromptEncoder']


@MODELS.register_module()
class SAMPromptEncoder(PromptEncoder):
    """``segment_anything``'s ``PromptEncoder`` with a ``frozen`` switch.

    PromptNucSeg keeps the pretrained prompt encoder fixed while the image
    encoder and the mask decoder are fine-tuned. State-dict keys are those
    of the official checkpoints under ``prompt_encoder.``.

    Args:
        embed_dim (int): Prompt embedding dimension. Defaults to 256.
        image_embedding_size (Sequence[int]): (h, w) of the image
            encoder's output grid: 16 x 16 for a ViT at 256 px, 64 x 64 for
            LiteMedSAM.
        input_image_size (Sequence[int]): (H, W) of the encoder input in
            pixels; point coordinates are normalised by it. Defaults to
            (256, 256).
        mask_in_chans (int): Hidden channels of the (unused) mask-prompt
            branch. Defaults to 16.
        frozen (bool): Freeze every parameter and keep eval mode. Defaults
            to True.
    """

    def __init__(self,
                 embed_dim: int = 256,
                 image_embedding_size: Sequence[int] = (16, 16),
                 input_image_size: Sequence[int] = (256, 256),
                 mask_in_chans: int = 16,
                 frozen: bool = True) -> None:
        super().__init__(
            embed_dim=embed_dim,
            image_embedding_size=tuple(image_embedding_size),
            input_image_size=tuple(input_image_size),
            mask_in_chans=mask_in_chans)
        self.frozen = frozen
        if frozen:
            self.requires_grad_(False)
            self.train(False)

    def train(self, mode: bool = True) -> 'SAMPromptEncoder':
        """Set train mode, except that a frozen encoder stays in eval."""
        return super().train(mode and not self.frozen)
