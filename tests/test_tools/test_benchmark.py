"""tools/benchmark.py: the agreement measure and the same-machine reference
path (timings themselves are not tested)."""
import importlib.util
import os.path as osp

import numpy as np
import pytest
import torch

from segment_anything.modeling.image_encoder import Block

from pns_mmdet.models.sam import PaddedWindowBlock

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_module(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


benchmark = load_module('pns_tool_benchmark',
                        osp.join(REPO, 'tools', 'benchmark.py'))
# The tiny PromptNucSeg of the detector tests (one definition for both).
tiny_models = load_module(
    'pns_test_prompt_nuc_seg',
    osp.join(REPO, 'tests', 'test_models', 'test_detectors',
             'test_prompt_nuc_seg.py'))


def test_agreement_values():
    ref = np.zeros((4, 6), np.int32)
    ref[:, :2] = 1  # 8 px
    ref[:, 3:5] = 2  # 8 px
    same = ref.copy()
    assert benchmark.agreement(ref, same) == (1.0, 1.0)
    # Instance 2 loses half its pixels: IoU 0.5 is not a match (> 0.5).
    half = ref.copy()
    half[:2, 3:5] = 0
    assert benchmark.agreement(ref, half) == (0.5, 0.75)
    assert benchmark.agreement(ref, np.zeros_like(ref)) == (0.0, 0.0)
    empty = np.zeros_like(ref)
    assert benchmark.agreement(empty, empty) == (1.0, 1.0)
    assert benchmark.agreement(empty, ref) == (0.0, 0.0)


def tiny_promptnucseg():
    torch.manual_seed(0)
    return tiny_models.build_model(test_cfg=dict()).eval()


def test_upstream_reference_decodes_every_prompt_in_every_tile():
    model = tiny_promptnucseg()
    img = torch.rand(3, 100, 100) * 255
    # 100 px with 64-px tiles at stride 48: starts 0 and 36 on each axis.
    points = torch.tensor([[5., 5.], [50., 50.], [95., 10.]])
    plain = benchmark.plain_reference_encoder(
        model, tiny_models.TINY_SEGMENTOR['image_encoder'])
    # The reference is built from the config with segment_anything's own
    # blocks; the model keeps its fast ones.
    assert all(type(b) is Block for b in plain.blocks)
    assert all(
        isinstance(b, PaddedWindowBlock)
        for b in model.segmentor.image_encoder.blocks)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(plain(x), model.segmentor.image_encoder(x),
                              atol=1e-5)
        count = benchmark.upstream_style_segmentor(model, img, points,
                                                   plain)
    # (5, 5) lies in 1 tile, (50, 50) in all 4, (95, 10) in 1.
    assert count == 6


REAL_TILE = osp.join(REPO, '..', 'shared', 'data', 'monuseg2018_test',
                     'images', 'TCGA-2Z-A9J9-01A-01-TS1.png')


@pytest.mark.skipif(not osp.isfile(REAL_TILE),
                    reason='../shared/data/monuseg2018_test is absent')
def test_real_tile_prompts_one_per_ground_truth_nucleus():
    from pns_mmdet.datasets.io import load_instance_map
    image, points, labels = benchmark.real_case(REAL_TILE)
    inst = load_instance_map(REAL_TILE.replace('/images/', '/inst_masks/'))
    assert image.shape[:2] == inst.shape
    assert len(points) == len(np.unique(inst)) - 1 == len(labels)
    # Every prompt lies inside a distinct nucleus.
    ids = inst[points[:, 1].long().numpy(), points[:, 0].long().numpy()]
    assert (ids > 0).all() and len(set(ids.tolist())) == len(ids)
