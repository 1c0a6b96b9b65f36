"""Consistency checks of the three SAM parts a segmentor is built from."""
from torch import nn

__all__ = ['check_sam_parts']


def check_sam_parts(image_encoder: nn.Module, prompt_encoder: nn.Module,
                    mask_decoder: nn.Module, img_size: int) -> None:
    """Fail early, with the config fields to fix, when the image encoder,
    prompt encoder and mask decoder disagree on sizes or channels."""
    emb_size = tuple(image_encoder.embedding_size)
    pe = prompt_encoder
    if tuple(pe.image_embedding_size) != emb_size:
        raise ValueError(
            'prompt_encoder.image_embedding_size '
            f'{tuple(pe.image_embedding_size)} does not match the image '
            f'encoder output grid {emb_size} (img_size {img_size})')
    if tuple(pe.input_image_size) != (img_size, img_size):
        raise ValueError(
            f'prompt_encoder.input_image_size {tuple(pe.input_image_size)}'
            f' must be (img_size, img_size) = {(img_size,) * 2}')
    enc_size = getattr(image_encoder, 'img_size', img_size)
    if enc_size != img_size:
        raise ValueError(f'image_encoder.img_size {enc_size} != '
                         f'img_size {img_size}')
    channels = image_encoder.out_channels
    if (pe.embed_dim != channels
            or mask_decoder.transformer_dim != channels):
        raise ValueError(
            f'image encoder output channels ({channels}), '
            f'prompt_encoder.embed_dim ({pe.embed_dim}) and '
            'mask_decoder.transformer_dim '
            f'({mask_decoder.transformer_dim}) must be equal')
