"""tools/benchmark.py: the agreement measure and the same-machine reference
path (timings themselves are not tested)."""
import importlib.util
import os.path as osp

import numpy as np
import torch
from mmdet.registry import MODELS
from mmengine.registry import init_default_scope

from pns_mmdet.models.sam import PaddedWindowBlock

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
_spec = importlib.util.spec_from_file_location(
    'pns_tool_benchmark', osp.join(REPO, 'tools', 'benchmark.py'))
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)


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
    init_default_scope('mmdet')
    dp = dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True)
    segmentor = dict(
        type='SAMPromptSegmentor',
        data_preprocessor=dp,
        img_size=64,
        image_encoder=dict(
            type='SAMImageEncoderViT', img_size=64, embed_dim=32, depth=2,
            num_heads=2, global_attn_indexes=(1, ), window_size=3,
            out_chans=32),
        prompt_encoder=dict(
            type='SAMPromptEncoder', embed_dim=32,
            image_embedding_size=(4, 4), input_image_size=(64, 64)),
        mask_decoder=dict(
            type='SAMMaskDecoder', transformer_dim=32, transformer_depth=1,
            transformer_mlp_dim=64, transformer_num_heads=2,
            iou_head_hidden_dim=16))
    prompter = dict(
        type='NucleusPrompter',
        data_preprocessor=dict(dp, pad_size_divisor=8),
        backbone=dict(type='ResNet', depth=18, base_channels=8,
                      out_indices=(0, 1, 2, 3), init_cfg=None),
        neck=dict(type='FPN', in_channels=[8, 16, 32, 64], out_channels=16,
                  num_outs=4),
        bbox_head=dict(type='PointAnchorHead', num_classes=2,
                       in_channels=16, feat_channels=16, hidden_dim=16,
                       stride=8))
    torch.manual_seed(0)
    return MODELS.build(
        dict(type='PromptNucSeg',
             data_preprocessor=dict(type='DetDataPreprocessor',
                                    bgr_to_rgb=True),
             prompter=prompter, segmentor=segmentor,
             test_cfg=dict(seg_tile_overlap=16))).eval()


def test_upstream_reference_decodes_every_prompt_in_every_tile():
    model = tiny_promptnucseg()
    img = torch.rand(3, 100, 100) * 255
    # 100 px with 64-px tiles at stride 48: starts 0 and 36 on each axis.
    points = torch.tensor([[5., 5.], [50., 50.], [95., 10.]])
    with torch.no_grad():
        count = benchmark.upstream_style_segmentor(model, img, points)
    # (5, 5) lies in 1 tile, (50, 50) in all 4, (95, 10) in 1.
    assert count == 6
    # The fast blocks are restored afterwards.
    assert all(
        isinstance(b, PaddedWindowBlock)
        for b in model.segmentor.image_encoder.blocks)
