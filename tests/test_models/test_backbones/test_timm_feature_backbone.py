import pytest
import timm
import torch
from mmdet.registry import MODELS

import pns_mmdet  # noqa: F401
from pns_mmdet.models.backbones import TimmFeatureBackbone


def test_random_init_levels_and_shapes():
    backbone = MODELS.build(
        dict(type='TimmFeatureBackbone', model_name='convnext_atto'))
    assert isinstance(backbone, TimmFeatureBackbone)
    assert backbone.strides == [4, 8, 16, 32]
    assert backbone.out_channels == [40, 80, 160, 320]
    feats = backbone(torch.randn(1, 3, 64, 96))
    assert [f.shape for f in feats] == [(1, c, 64 // s, 96 // s) for c, s in
                                        zip(backbone.out_channels,
                                            backbone.strides)]


def test_loads_local_checkpoint_and_init_weights_keeps_it(tmp_path):
    reference = timm.create_model('convnext_atto', pretrained=False)
    path = tmp_path / 'atto.pth'
    torch.save(reference.state_dict(), path)
    backbone = TimmFeatureBackbone('convnext_atto', checkpoint=str(path))
    backbone.init_weights()
    torch.testing.assert_close(backbone.model.stem_0.weight,
                               reference.stem[0].weight)


def test_missing_checkpoint_and_bad_arguments():
    with pytest.raises(FileNotFoundError, match='never'):
        TimmFeatureBackbone('convnext_atto', checkpoint='/no/such/file.pth')
    with pytest.raises(ValueError, match='pretrained'):
        TimmFeatureBackbone('convnext_atto', pretrained=True)
    with pytest.raises(ValueError, match='init_cfg'):
        TimmFeatureBackbone(
            'convnext_atto', init_cfg=dict(type='Pretrained', checkpoint='x'))
