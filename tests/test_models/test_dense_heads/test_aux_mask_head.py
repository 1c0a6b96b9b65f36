import math

import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.structures import PixelData

import pns_mmdet  # noqa: F401
from pns_mmdet.models.dense_heads import AuxMaskHead


def make_head(**kwargs) -> AuxMaskHead:
    cfg = dict(type='AuxMaskHead', in_channels=6, feat_channels=5)
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    return head


def sample(shape, seg=None):
    s = DetDataSample(
        metainfo=dict(img_shape=shape, batch_input_shape=shape))
    if seg is not None:
        s.gt_sem_seg = PixelData(sem_seg=seg[None].to(torch.uint8))
    return s


def constant_logit(head: AuxMaskHead, value: float) -> None:
    nn.init.zeros_(head.conv_logits.weight)
    nn.init.constant_(head.conv_logits.bias, value)


def test_registered():
    assert MODELS.get('AuxMaskHead') is AuxMaskHead


def test_shared_p2_shapes_and_no_shift():
    head = make_head()
    x = (torch.randn(2, 6, 5, 7), torch.randn(2, 6, 3, 4))
    logits = head(x)
    # The 1x1 conv has no padding: the map keeps the P2 size (upstream's
    # padding=1 grows it to 7 x 9 and shifts the upsampled mask).
    assert logits.shape == (2, 1, 5, 7)
    probs = head.predict(x, [sample((20, 28)), sample((20, 28))])
    assert probs.shape == (2, 20, 28)
    assert probs.min() >= 0 and probs.max() <= 1


def test_own_fpn_on_backbone_features():
    head = make_head(in_channels=[3, 4, 5, 6], fpn_channels=8)
    assert head.use_backbone_feats
    feats = (torch.randn(1, 3, 8, 8), torch.randn(1, 4, 4, 4),
             torch.randn(1, 5, 2, 2), torch.randn(1, 6, 1, 1))
    assert head(feats).shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match='backbone levels'):
        head(feats[:2])


def test_focal_loss_hand_computed_with_ignored_padding():
    """Constant logit z: p = sigmoid(z); alpha-free focal loss is
    -(1-p)^2 log p on nucleus pixels and -p^2 log(1-p) on background,
    averaged over the non-ignored pixels only."""
    head = make_head()
    z = 0.7
    constant_logit(head, z)
    x = (torch.randn(2, 6, 2, 2), )
    # Image 0: 8 x 8 fully inside the batch; image 1: 8 x 4, the rest of
    # the 8 x 8 batch shape is padding (ignored).
    seg0 = torch.zeros(8, 8)
    seg0[:2, :5] = 1  # 10 nucleus pixels
    seg1 = torch.ones(8, 4)  # 32 nucleus pixels
    seg1[0, :] = 255  # 4 explicitly ignored pixels
    samples = [sample((8, 8), seg0), sample((8, 8), seg1)]
    loss = head.loss(x, samples)['loss_mask']
    p = 1 / (1 + math.exp(-z))
    fg, bg = -(1 - p)**2 * math.log(p), -p**2 * math.log(1 - p)
    n_fg, n_bg = 10 + 28, 54
    expected = (n_fg * fg + n_bg * bg) / (n_fg + n_bg)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_loss_needs_gt_sem_seg():
    head = make_head()
    with pytest.raises(KeyError, match='gt_sem_seg'):
        head.loss((torch.randn(1, 6, 2, 2), ), [sample((8, 8))])


def test_loss_backpropagates():
    head = make_head()
    seg = (torch.rand(16, 16) > 0.5)
    loss = head.loss((torch.randn(1, 6, 4, 4), ),
                     [sample((16, 16), seg)])['loss_mask']
    loss.backward()
    assert head.conv.conv.weight.grad.abs().sum() > 0
