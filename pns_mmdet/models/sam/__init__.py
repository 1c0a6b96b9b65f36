from .checkpoint import (LITEMEDSAM_CHECKPOINT, SAM_PARTS, load_sam_checkpoint,
                         resolve_checkpoint_path)
from .image_encoder import SAM_VIT_ARCHS, SAMImageEncoderViT
from .mask_decoder import SAMMaskDecoder
from .padded_window_block import PaddedWindowBlock, decomposed_rel_pos_bias
from .parts import check_sam_parts
from .pos_embed import resize_abs_pos_embed, resize_rel_pos
from .prompt_encoder import SAMPromptEncoder
from .tiny_vit_encoder import (LITEMEDSAM_ARCH, FoldedConv2dBN,
                               LiteMedSAMImageEncoder)

__all__ = [
    'FoldedConv2dBN', 'LITEMEDSAM_ARCH', 'LITEMEDSAM_CHECKPOINT',
    'LiteMedSAMImageEncoder',
    'PaddedWindowBlock', 'SAM_PARTS', 'SAM_VIT_ARCHS', 'SAMImageEncoderViT',
    'SAMMaskDecoder', 'SAMPromptEncoder', 'check_sam_parts',
    'decomposed_rel_pos_bias', 'load_sam_checkpoint',
    'resize_abs_pos_embed', 'resize_rel_pos', 'resolve_checkpoint_path'
]
