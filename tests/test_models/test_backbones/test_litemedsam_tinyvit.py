import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.registry import init_default_scope

import pns_mmdet  # noqa: F401
from pns_mmdet.models.backbones import TINYVIT_LEVELS, LiteMedSAMTinyViT
from pns_mmdet.models.sam.checkpoint import (LITEMEDSAM_CHECKPOINT,
                                             _read_state_dict,
                                             resolve_checkpoint_path)

# The vendored TinyViT keeps 64 x 64 tokens in its last stage only when
# that stage is 320 wide; everything else can be tiny.
TINY = dict(embed_dims=[8, 16, 32, 320], depths=[1, 1, 1, 1],
            num_heads=[1, 1, 2, 10])


def tiny_backbone(**kwargs) -> LiteMedSAMTinyViT:
    torch.manual_seed(0)
    return LiteMedSAMTinyViT(checkpoint=None, **{**TINY, **kwargs})


def test_packaged_weights_load_strictly():
    """Every image_encoder.* tensor of lite_medsam.pth lands in the
    backbone, unchanged, and no backbone tensor is left without one."""
    backbone = LiteMedSAMTinyViT(frozen=True)
    state = _read_state_dict(resolve_checkpoint_path(LITEMEDSAM_CHECKPOINT))
    expected = {k[len('image_encoder.'):]: v for k, v in state.items()
                if k.startswith('image_encoder.')}
    own = backbone.image_encoder.state_dict()
    assert set(own) == set(expected)
    assert len(own) == 298
    for key, value in expected.items():
        assert own[key].shape == value.shape, key
        assert torch.equal(own[key], value), key
    # The neck equals the segmentor's image embedding of the same tile.
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.equal(backbone(x)[0], backbone.image_encoder(x))


def test_mismatched_checkpoint_is_an_error(tmp_path):
    state = tiny_backbone().image_encoder.state_dict()
    state = {f'image_encoder.{k}': v for k, v in state.items()}
    # The other SAM parts are skipped, a missing encoder key is not.
    state['mask_decoder.some.weight'] = torch.zeros(1)
    state.pop('image_encoder.neck.0.weight')
    path = tmp_path / 'partial.pth'
    torch.save(state, path)
    with pytest.raises(RuntimeError, match='1 missing keys: neck.0.weight|'
                       'missing keys: image_encoder.neck.0.weight'):
        LiteMedSAMTinyViT(checkpoint=str(path), **TINY)
    state['image_encoder.neck.0.weight'] = torch.zeros(256, 320, 1, 1)
    state['extra.weight'] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(RuntimeError, match='unexpected keys: extra.weight'):
        LiteMedSAMTinyViT(checkpoint=str(path), **TINY)


def test_feature_shapes_on_an_odd_sized_input():
    backbone = tiny_backbone(out_indices=(0, 1, 2, 3, 4)).eval()
    assert backbone.strides == [2, 4, 4, 4, 4, 8, 16, 32]
    assert backbone.out_channels[4:] == [256] * 4
    assert [s for _, s, _ in TINYVIT_LEVELS] == backbone.strides[:5]
    x = torch.rand(2, 3, 300, 517)
    with torch.no_grad():
        feats = backbone(x)
    shapes = [tuple(f.shape) for f in feats]
    assert shapes == [(2, 16, 150, 259), (2, 32, 75, 130), (2, 320, 75, 130),
                      (2, 320, 75, 130), (2, 256, 75, 130),
                      (2, 256, 38, 65), (2, 256, 19, 33), (2, 256, 10, 17)]
    # Each 256 tile is encoded on its own: the second tile of the second
    # row equals encoding that (zero-padded) tile alone.
    padded = torch.nn.functional.pad(x, (0, 768 - 517, 0, 512 - 300))
    with torch.no_grad():
        alone = backbone.image_encoder(padded[1:, :, 256:512, 256:512])
    assert torch.allclose(feats[4][1:, :, 64:75, 64:128], alone[:, :, :11],
                          atol=1e-5)
    # The pooled levels are max-pools of the neck.
    assert torch.equal(feats[5][..., 0, 0], feats[4][..., :2, :2].amax((-2,
                                                                         -1)))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match='out_indices'):
        tiny_backbone(out_indices=(4, 1))
    with pytest.raises(ValueError, match='pool_strides'):
        tiny_backbone(pool_strides=(6, ))
    with pytest.raises(ValueError, match='frozen_stages'):
        tiny_backbone(frozen_stages=5)
    with pytest.raises(ValueError, match='init_cfg'):
        tiny_backbone(init_cfg=dict(type='Pretrained'))
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        tiny_backbone()(torch.rand(3, 64, 64))


def test_prompter_trains_a_step_with_frozen_stages():
    """A NucleusPrompter on the TinyViT backbone (stages 0-2 frozen) takes
    an optimiser step: the trainable stage and neck move, the frozen ones
    and their BatchNorm statistics do not."""
    from tests.test_models.test_detectors.test_nucleus_prompter import (
        TINY_PROMPTER, packed_batch)
    init_default_scope('mmdet')
    cfg = copy.deepcopy(TINY_PROMPTER)
    cfg['data_preprocessor'].update(mean=[0., 0., 0.], std=[255.] * 3)
    cfg['backbone'] = dict(type='LiteMedSAMTinyViT', checkpoint=None,
                           frozen_stages=3, **TINY)
    cfg['neck'].update(in_channels=[256] * 4)
    cfg['aux_mask_head'].update(in_channels=[256] * 4)
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    model.train()
    encoder = model.backbone.image_encoder
    assert not encoder.patch_embed.training and not encoder.layers[2].training
    assert encoder.layers[3].training
    before = {k: v.detach().clone()
              for k, v in encoder.named_parameters()}
    buffers = {k: v.clone() for k, v in encoder.named_buffers()}
    optim = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.1)
    data = model.data_preprocessor(packed_batch(), True)
    losses = model.loss(data['inputs'], data['data_samples'])
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    optim.step()
    frozen_prefixes = ('patch_embed.', 'layers.0.', 'layers.1.', 'layers.2.')
    for key, param in encoder.named_parameters():
        frozen = key.startswith(frozen_prefixes)
        assert param.requires_grad != frozen, key
        assert torch.equal(param, before[key]) == frozen, key
    for key, buffer in encoder.named_buffers():
        if key.startswith(frozen_prefixes):
            assert torch.equal(buffer, buffers[key]), key
