import copy
from functools import partial

import pytest
import torch
from segment_anything.modeling import ImageEncoderViT
from segment_anything.modeling.image_encoder import Block
from torch import nn

from pns_mmdet.models.sam import (PaddedWindowBlock, SAMImageEncoderViT,
                                  use_padded_window_blocks)


def plain_encoder(img_size: int, window: int) -> ImageEncoderViT:
    torch.manual_seed(0)
    enc = ImageEncoderViT(
        img_size=img_size, patch_size=16, embed_dim=32, depth=3,
        num_heads=2, global_attn_indexes=(1, ), window_size=window,
        out_chans=16, use_rel_pos=True, rel_pos_zero_init=False,
        norm_layer=partial(nn.LayerNorm, eps=1e-6))
    for p in enc.parameters():
        nn.init.normal_(p, std=0.2)
    return enc


# 64 and 80 px: 4 x 4 and 5 x 5 tokens padded to windows of 3; 96 px = 6 x 6
# tokens needs no padding (the plain path).
@pytest.mark.parametrize('img_size, window', [(64, 3), (80, 3), (96, 3)])
def test_padded_window_blocks_are_exact(img_size, window):
    enc = plain_encoder(img_size, window).eval()
    x = torch.randn(2, 3, img_size, img_size)
    with torch.no_grad():
        ref = enc(x)
        fast = copy.deepcopy(enc)
        assert use_padded_window_blocks(fast) == 3
        out = fast(x)
    assert isinstance(fast.blocks[0], PaddedWindowBlock)
    assert fast.state_dict().keys() == enc.state_dict().keys()
    assert torch.allclose(out, ref, atol=1e-6, rtol=0)


def test_padded_window_gradients_equal_plain():
    enc = plain_encoder(80, 3).double()
    fast = copy.deepcopy(enc)
    use_padded_window_blocks(fast)
    x = torch.randn(1, 3, 80, 80, dtype=torch.float64)
    for model in (enc, fast):
        (model(x)**2).sum().backward()
    for (name, p_ref), p_fast in zip(enc.named_parameters(),
                                     fast.parameters()):
        assert torch.allclose(p_fast.grad, p_ref.grad, rtol=1e-9,
                              atol=1e-10), name


def test_switch_back_to_plain_blocks():
    enc = plain_encoder(64, 3)
    assert use_padded_window_blocks(enc) == 3
    assert use_padded_window_blocks(enc, enabled=False) == 3
    assert all(type(b) is Block for b in enc.blocks)


@pytest.mark.parametrize('padded', [True, False])
def test_sam_encoder_option(padded):
    enc = SAMImageEncoderViT(
        'vit_b', img_size=64, embed_dim=32, depth=2, num_heads=2,
        global_attn_indexes=(1, ), window_size=3,
        padded_window_attention=padded)
    assert all(
        isinstance(b, PaddedWindowBlock) == padded for b in enc.blocks)
