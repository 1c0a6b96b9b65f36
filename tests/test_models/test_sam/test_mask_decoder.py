"""``SAMMaskDecoder.predict_single_masks`` against SAM's own forward."""
import math
from typing import Tuple

import pytest
import torch
from torch import Tensor, nn

from pns_mmdet.models.sam import SAMMaskDecoder


def _decoder(dim: int, mlp_dim: int, heads: int, iou_hidden: int,
             seed: int = 0) -> SAMMaskDecoder:
    """Decoder with random weights large enough for sharp attention and
    logits of order 1-10 (the default init gives near-constant ones)."""
    torch.manual_seed(seed)
    dec = SAMMaskDecoder(transformer_dim=dim, transformer_mlp_dim=mlp_dim,
                         transformer_num_heads=heads,
                         iou_head_hidden_dim=iou_hidden)
    with torch.no_grad():
        for name, p in dec.named_parameters():
            if p.dim() >= 2:
                # Linear (out, in), ConvTranspose2d (in, out, 2, 2) and
                # the token embeddings.
                fan_in = p.size(0) if p.dim() == 4 else p.size(-1)
                p.normal_(0, 1.5 / math.sqrt(fan_in))
            elif 'norm' in name and name.endswith('weight'):
                p.normal_(1, 0.2)
            else:
                p.normal_(0, 0.2)
        dec.output_hypernetworks_mlps[0].layers[-1].weight.mul_(3)
    return dec.eval()


def _inputs(dim: int, hw: int, num_prompts: int, num_sparse: int,
            shared_dense: bool, seed: int = 1) -> Tuple[Tensor, ...]:
    """(1, C, h, w) embedding and PE, (N, T, C) sparse and (1 or N, C, h,
    w) dense prompt embeddings."""
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(1, dim, hw, hw, generator=gen)
    pe = torch.randn(1, dim, hw, hw, generator=gen)
    sparse = torch.randn(num_prompts, num_sparse, dim, generator=gen)
    dense = torch.randn(1 if shared_dense else num_prompts, dim, hw, hw,
                        generator=gen) * 0.5
    return emb, pe, sparse, dense


def _reference(dec: SAMMaskDecoder, emb: Tensor, pe: Tensor, sparse: Tensor,
               dense: Tensor) -> Tuple[Tensor, Tensor]:
    """segment_anything's ``MaskDecoder.forward`` single-mask output."""
    dense = dense.expand(sparse.size(0), -1, -1, -1)
    masks, iou = dec(emb, pe, sparse, dense, multimask_output=False)
    return masks[:, 0], iou[:, 0]


def _assert_close(out: Tensor, ref: Tensor, atol: float = 1e-4) -> None:
    assert out.shape == ref.shape
    scale = max(1.0, ref.abs().max().item())
    diff = (out - ref).abs().max().item() if ref.numel() else 0.0
    assert diff <= atol * scale, f'max abs diff {diff} (scale {scale})'


# (dim, mlp_dim, heads, iou_hidden, hw, prompts, sparse tokens). With few
# tokens (heads * tokens < dim / 2) the per-prompt attentions use the
# folded projections, otherwise the plain ones; 20 SAM-B-size prompts
# (and every 64 x 64 one) are decoded in several chunks.
CASES = [
    (32, 64, 2, 16, 8, 7, 2),  # tiny, folded
    (32, 64, 2, 16, 8, 5, 6),  # tiny, 11 tokens: plain
    (256, 2048, 8, 256, 16, 20, 2),  # SAM-B
    (256, 2048, 8, 256, 16, 3, 12),  # SAM-B, 17 tokens: plain
    (256, 2048, 8, 256, 64, 3, 2),  # LiteMedSAM
]


@pytest.mark.parametrize('shared_dense', [True, False])
@pytest.mark.parametrize('case', CASES)
def test_equals_sam_forward(case, shared_dense):
    dim, mlp_dim, heads, iou_hidden, hw, num_prompts, num_sparse = case
    dec = _decoder(dim, mlp_dim, heads, iou_hidden)
    emb, pe, sparse, dense = _inputs(dim, hw, num_prompts, num_sparse,
                                     shared_dense)
    with torch.no_grad():
        ref_masks, ref_iou = _reference(dec, emb, pe, sparse, dense)
        masks, iou = dec.predict_single_masks(emb, pe, sparse, dense)
    assert masks.shape == (num_prompts, 4 * hw, 4 * hw)
    # Logits of order 1-10, so this is far from trivially small.
    assert ref_masks.abs().max() > 1
    _assert_close(masks, ref_masks)
    _assert_close(iou, ref_iou)


@pytest.mark.parametrize('shared_dense', [True, False])
@pytest.mark.parametrize('num_sparse', [2, 6])
def test_gradients_equal_sam_forward(num_sparse, shared_dense):
    dec = _decoder(32, 64, 2, 16).double().train()
    emb, pe, sparse, dense = (
        x.double() for x in _inputs(32, 8, 4, num_sparse, shared_dense))
    gen = torch.Generator().manual_seed(2)
    mask_weight = torch.randn(4, 32, 32, generator=gen, dtype=torch.float64)
    iou_weight = torch.randn(4, generator=gen, dtype=torch.float64)
    inputs = (emb, sparse, dense)
    grads = []
    for fn in (_reference, SAMMaskDecoder.predict_single_masks):
        dec.zero_grad()
        for x in inputs:
            x.grad = None
            x.requires_grad_(True)
        masks, iou = fn(dec, emb, pe, sparse, dense)
        ((masks * mask_weight).sum() + (iou * iou_weight).sum()).backward()
        grads.append({
            **{n: p.grad
               for n, p in dec.named_parameters() if p.requires_grad},
            **{f'input{i}': x.grad
               for i, x in enumerate(inputs)}
        })
    ref, out = grads
    assert ref.keys() == out.keys()
    for name, ref_grad in ref.items():
        # Every parameter SAM's single-mask output uses gets a gradient
        # (no unused parameters for DDP), e.g. the key bias, whose
        # gradient is zero.
        assert out[name] is not None, name
        if ref_grad is None:
            ref_grad = torch.zeros_like(out[name])
        assert torch.allclose(out[name], ref_grad, rtol=1e-7, atol=1e-9), (
            name, (out[name] - ref_grad).abs().max())


def test_no_prompts():
    dec = _decoder(32, 64, 2, 16)
    for shared in (True, False):
        emb, pe, sparse, dense = _inputs(32, 8, 0, 2, shared)
        emb.requires_grad_(True)
        masks, iou = dec.predict_single_masks(emb, pe, sparse, dense)
        assert masks.shape == (0, 32, 32) and iou.shape == (0, )
        # Still part of the graph, so an empty loss can backpropagate.
        (masks.sum() + iou.sum()).backward()


def test_state_dict_keys_are_sam_ones():
    from segment_anything.modeling import MaskDecoder, TwoWayTransformer
    ours = SAMMaskDecoder()
    sam = MaskDecoder(
        transformer_dim=256,
        transformer=TwoWayTransformer(
            depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        num_multimask_outputs=3,
        activation=nn.GELU,
        iou_head_depth=3,
        iou_head_hidden_dim=256)
    assert ({k: v.shape
             for k, v in ours.state_dict().items()} ==
            {k: v.shape
             for k, v in sam.state_dict().items()})
