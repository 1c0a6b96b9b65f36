"""SAM part wrappers: arch zoo, freezing, and the shared-image decoder."""
import pytest
import torch
from torch import nn

from pns_mmdet.models.sam import (SAM_VIT_ARCHS, LiteMedSAMImageEncoder,
                                  SAMImageEncoderViT, SAMMaskDecoder,
                                  SAMPromptEncoder)


def test_arch_zoo_and_overrides():
    assert SAM_VIT_ARCHS['vit_b']['embed_dim'] == 768
    assert SAM_VIT_ARCHS['vit_l']['depth'] == 24
    assert SAM_VIT_ARCHS['vit_h']['global_attn_indexes'] == (7, 15, 23, 31)
    enc = SAMImageEncoderViT(arch='vit_h', img_size=64, embed_dim=32,
                             depth=2, num_heads=2, global_attn_indexes=[1],
                             out_chans=16)
    assert len(enc.blocks) == 2
    assert enc.blocks[0].window_size == 14 and enc.blocks[1].window_size == 0
    assert enc.embedding_size == (4, 4)
    assert enc(torch.randn(1, 3, 64, 64)).shape == (1, 16, 4, 4)
    with pytest.raises(KeyError, match='unknown arch "vit_x"'):
        SAMImageEncoderViT(arch='vit_x')
    with pytest.raises(ValueError, match='multiple of patch_size'):
        SAMImageEncoderViT(img_size=250, embed_dim=32, depth=1, num_heads=2)
    with pytest.raises(ValueError, match='img_size must be 256'):
        LiteMedSAMImageEncoder(img_size=1024)


@pytest.mark.parametrize('module', [
    lambda: SAMImageEncoderViT(img_size=64, embed_dim=32, depth=1,
                               num_heads=2, global_attn_indexes=[0],
                               frozen=True),
    lambda: SAMPromptEncoder(embed_dim=32, image_embedding_size=(4, 4),
                             input_image_size=(64, 64)),
    lambda: SAMMaskDecoder(transformer_dim=32, transformer_mlp_dim=64,
                           transformer_num_heads=2, frozen=True),
])
def test_frozen_parts_stay_frozen(module):
    parent = nn.ModuleDict(dict(part=module()))
    parent.train()
    part = parent['part']
    assert part.frozen
    assert not part.training
    assert all(not m.training for m in part.modules())
    assert not any(p.requires_grad for p in part.parameters())


def test_prompt_encoder_frozen_by_default_and_unfreezable():
    assert SAMPromptEncoder().frozen
    pe = SAMPromptEncoder(frozen=False).train()
    assert pe.training and all(p.requires_grad for p in pe.parameters())


def test_shared_image_decoder_equals_sam_forward():
    torch.manual_seed(0)
    dec = SAMMaskDecoder(transformer_dim=32, transformer_mlp_dim=64,
                         transformer_num_heads=2, iou_head_hidden_dim=16)
    pe = SAMPromptEncoder(embed_dim=32, image_embedding_size=(8, 8),
                          input_image_size=(128, 128))
    emb = torch.randn(1, 32, 8, 8)
    coords = torch.rand(7, 3, 2) * 128
    labels = torch.tensor([[1, 0, -1]] * 7)
    sparse, dense = pe(points=(coords, labels), boxes=None, masks=None)
    with torch.no_grad():
        ref_masks, ref_iou = dec(emb, pe.get_dense_pe(), sparse, dense,
                                 multimask_output=False)
        masks, iou = dec.predict_single_masks(emb, pe.get_dense_pe(), sparse,
                                              dense[:1])
    assert masks.shape == (7, 32, 32) and iou.shape == (7, )
    assert torch.allclose(masks, ref_masks[:, 0], atol=1e-5)
    assert torch.allclose(iou, ref_iou[:, 0], atol=1e-6)
    # A single prompt takes the same path.
    with torch.no_grad():
        one, _ = dec.predict_single_masks(emb, pe.get_dense_pe(),
                                          sparse[:1], dense[:1])
    assert torch.allclose(one, ref_masks[:1, 0], atol=1e-5)
    with pytest.raises(ValueError, match='batch size 1'):
        dec.predict_single_masks(emb.expand(2, -1, -1, -1),
                                 pe.get_dense_pe(), sparse, dense[:1])


def test_tinyvit_bias_cache_follows_loaded_weights():
    """TinyViT caches attention biases in eval mode; loading new weights
    into an eval-mode (here frozen, zero-bias) encoder must refresh that
    cache."""
    # The vendored TinyViT keeps 64 x 64 tokens in its last stage only
    # when that stage is 320 (or 448 / 576) wide.
    tiny = dict(embed_dims=[8, 16, 32, 320], depths=[1, 1, 1, 1],
                num_heads=[1, 1, 2, 10])
    torch.manual_seed(0)
    enc = LiteMedSAMImageEncoder(frozen=True, **tiny)
    src = LiteMedSAMImageEncoder(**tiny)
    with torch.no_grad():
        for name, p in src.named_parameters():
            if 'attention_biases' in name:
                p.normal_()
    src.eval()  # caches its (random) biases
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        expected = src(x)
        enc.load_state_dict(src.state_dict())
        out = enc(x)
    assert out.shape == (1, 256, 64, 64)
    assert torch.allclose(out, expected, atol=1e-5)
