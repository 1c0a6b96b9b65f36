"""Position embeddings of SAM's 1024-px weights resized for 256-px inputs."""
import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT
from segment_anything.modeling.image_encoder import get_rel_pos

from pns_mmdet.models.sam import (SAMImageEncoderViT, resize_abs_pos_embed,
                                  resize_rel_pos)

# A ViT with SAM's layout but tiny widths, so it runs at 1024 px on a CPU.
TINY = dict(embed_dim=16, depth=2, num_heads=2, global_attn_indexes=(1, ),
            out_chans=8)


def reference_1024(seed: int = 0) -> ImageEncoderViT:
    """segment_anything's encoder at the 1024-px pretraining size with
    non-trivial (random) position tensors."""
    torch.manual_seed(seed)
    ref = ImageEncoderViT(
        img_size=1024, patch_size=16, mlp_ratio=4.0, qkv_bias=True,
        norm_layer=lambda d: torch.nn.LayerNorm(d, eps=1e-6),
        use_rel_pos=True, window_size=14, **TINY)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if 'pos' in name:
                p.normal_()
    return ref.eval()


def test_resize_functions_shapes_and_constants():
    pe = torch.full((1, 64, 64, 5), 0.25)
    out = resize_abs_pos_embed(pe, 16)
    assert out.shape == (1, 16, 16, 5)
    assert torch.allclose(out, torch.full_like(out, 0.25))
    assert resize_abs_pos_embed(pe, 64) is pe
    rel = torch.randn(127, 6)
    out = resize_rel_pos(rel, 31)
    assert out.shape == (31, 6)
    assert resize_rel_pos(rel, 127) is rel
    # Same table as SAM's own run-time interpolation in get_rel_pos.
    ref = get_rel_pos(16, 16, rel)  # (16, 16, 6) = table[q - k + 15]
    idx = torch.arange(16)[:, None] - torch.arange(16)[None] + 15
    assert torch.allclose(out[idx], ref)


def test_loaded_shapes_at_256():
    ref = reference_1024()
    enc = SAMImageEncoderViT(arch='vit_b', img_size=256, **TINY)
    enc.load_state_dict(ref.state_dict(), strict=True)
    assert enc.pos_embed.shape == (1, 16, 16, 16)
    head_dim = 16 // 2
    # Block 0 is windowed (14 x 14 windows: 2 * 14 - 1), block 1 global.
    assert enc.blocks[0].attn.rel_pos_h.shape == (27, head_dim)
    assert enc.blocks[1].attn.rel_pos_h.shape == (31, head_dim)
    assert enc.blocks[1].attn.rel_pos_w.shape == (31, head_dim)
    assert torch.equal(enc.blocks[0].attn.rel_pos_h,
                       ref.blocks[0].attn.rel_pos_h)
    expected = F.interpolate(
        ref.pos_embed.permute(0, 3, 1, 2), size=(16, 16), mode='bicubic',
        align_corners=False).permute(0, 2, 3, 1)
    assert torch.allclose(enc.pos_embed, expected)


def test_reproduces_original_at_1024():
    ref = reference_1024()
    # Plain blocks: the same operations as segment_anything, so the
    # outputs are bitwise equal (the fused attention of the padded blocks
    # is compared to SAM's within float rounding in
    # test_padded_window_block.py).
    enc = SAMImageEncoderViT(arch='vit_b', img_size=1024,
                             padded_window_attention=False, **TINY).eval()
    enc.load_state_dict(ref.state_dict(), strict=True)
    for key, value in ref.state_dict().items():
        assert torch.equal(enc.state_dict()[key], value), key
    x = torch.randn(1, 3, 1024, 1024)
    with torch.no_grad():
        assert torch.equal(enc(x), ref(x))


def test_256_matches_upstream_forward_time_resize():
    """Upstream PromptNucSeg keeps the 64 x 64 tensors and resizes them at
    every forward; resizing once at load time gives the same outputs."""
    ref = reference_1024()
    enc = SAMImageEncoderViT(arch='vit_b', img_size=256, **TINY).eval()
    enc.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        tokens = ref.patch_embed(x)
        tokens = tokens + resize_abs_pos_embed(ref.pos_embed, 16)
        for blk in ref.blocks:  # get_rel_pos resizes 127 -> 31 itself
            tokens = blk(tokens)
        expected = ref.neck(tokens.permute(0, 3, 1, 2))
        out = enc(x)
    assert out.shape == (2, 8, 16, 16)
    assert torch.allclose(out, expected, atol=1e-5)
