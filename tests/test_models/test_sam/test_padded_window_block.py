from functools import partial

import pytest
import torch
from segment_anything.modeling import ImageEncoderViT
from torch import nn

from pns_mmdet.models.sam import PaddedWindowBlock, SAMImageEncoderViT

TINY = dict(patch_size=16, embed_dim=32, depth=3, num_heads=2,
            global_attn_indexes=(1, ), out_chans=16, use_rel_pos=True,
            rel_pos_zero_init=False)


def plain_encoder(img_size: int, window: int) -> ImageEncoderViT:
    """segment_anything's own encoder (plain Blocks), random weights."""
    torch.manual_seed(0)
    enc = ImageEncoderViT(
        img_size=img_size, window_size=window,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), **TINY)
    for p in enc.parameters():
        nn.init.normal_(p, std=0.2)
    return enc


def padded_copy(enc: ImageEncoderViT, window: int) -> SAMImageEncoderViT:
    """The encoder built with padded window blocks, same weights."""
    fast = SAMImageEncoderViT('vit_b', img_size=enc.img_size,
                              window_size=window,
                              padded_window_attention=True, **TINY)
    fast.load_state_dict(enc.state_dict())
    return fast.to(next(enc.parameters()).dtype)


# 64 and 80 px: 4 x 4 and 5 x 5 tokens padded to windows of 3; 96 px = 6 x 6
# tokens needs no padding (the plain path).
@pytest.mark.parametrize('img_size, window', [(64, 3), (80, 3), (96, 3)])
def test_padded_window_blocks_are_exact(img_size, window):
    enc = plain_encoder(img_size, window).eval()
    x = torch.randn(2, 3, img_size, img_size)
    with torch.no_grad():
        ref = enc(x)
        fast = padded_copy(enc, window).eval()
        out = fast(x)
    assert isinstance(fast.blocks[0], PaddedWindowBlock)
    assert fast.state_dict().keys() == enc.state_dict().keys()
    assert torch.allclose(out, ref, atol=1e-6, rtol=0)


def test_padded_window_gradients_equal_plain():
    enc = plain_encoder(80, 3).double()
    fast = padded_copy(enc, 3)
    x = torch.randn(1, 3, 80, 80, dtype=torch.float64)
    for model in (enc, fast):
        (model(x)**2).sum().backward()
    for (name, p_ref), p_fast in zip(enc.named_parameters(),
                                     fast.parameters()):
        assert torch.allclose(p_fast.grad, p_ref.grad, rtol=1e-9,
                              atol=1e-10), name


@pytest.mark.parametrize('padded', [True, False])
def test_sam_encoder_option(padded):
    enc = SAMImageEncoderViT(
        'vit_b', img_size=64, embed_dim=32, depth=2, num_heads=2,
        global_attn_indexes=(1, ), window_size=3,
        padded_window_attention=padded)
    assert all(
        isinstance(b, PaddedWindowBlock) == padded for b in enc.blocks)
