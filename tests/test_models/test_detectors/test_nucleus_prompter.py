import copy

import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData, PixelData

import pns_mmdet  # noqa: F401
from pns_mmdet.models.detectors import NucleusPrompter

TINY_PROMPTER = dict(
    type='NucleusPrompter',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=8,
        pad_seg=True,
        seg_pad_value=255),
    backbone=dict(
        type='ResNet',
        depth=18,
        base_channels=8,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='BN'),
        init_cfg=None),
    neck=dict(
        type='FPN', in_channels=[8, 16, 32, 64], out_channels=16, num_outs=4),
    bbox_head=dict(
        type='PointAnchorHead',
        num_classes=2,
        in_channels=16,
        feat_channels=16,
        hidden_dim=16,
        stride=8,
        feat_levels=(0, 1, 2)),
    aux_mask_head=dict(
        type='AuxMaskHead', in_channels=[8, 16, 32, 64], fpn_channels=16,
        feat_channels=16),
    test_cfg=dict(nms_radius=12.0, mask_filter=False))


def build(**overrides) -> NucleusPrompter:
    init_default_scope('mmdet')
    cfg = copy.deepcopy(TINY_PROMPTER)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def packed_batch(shapes=((37, 45), (40, 29)), scale=(1., 1.)):
    """uint8 BGR images with a few nuclei each, as PackNucleusInputs does."""
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for h, w in shapes:
        inputs.append(torch.randint(0, 256, (3, h, w), generator=gen,
                                    dtype=torch.uint8))
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(h, w),
                ori_shape=(round(h / scale[1]), round(w / scale[0])),
                scale_factor=scale))
        points = torch.tensor([[5., 6.], [w - 8., h / 2.]])
        sample.gt_instances = InstanceData(
            points=points,
            labels=torch.tensor([0, 1]),
            bboxes=torch.cat([points - 3, points + 3], -1))
        seg = torch.zeros(1, h, w, dtype=torch.uint8)
        seg[:, 3:9, 3:9] = 1
        sample.gt_sem_seg = PixelData(sem_seg=seg)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def test_registered_and_stride():
    assert MODELS.get('NucleusPrompter') is NucleusPrompter
    model = build()
    assert model.stride == 8 == model.bbox_head.stride


def test_loss_mode_sums_three_terms_and_backpropagates():
    model = build()
    data = model.data_preprocessor(packed_batch(), True)
    assert data['inputs'].shape[-2:] == (40, 48)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_point', 'loss_mask'}
    assert all(v.item() > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    assert model.aux_mask_head.conv_logits.weight.grad.abs().sum() > 0


def test_aux_on_shared_p2_and_without_aux():
    model = build(aux_mask_head=dict(
        type='AuxMaskHead', in_channels=16, feat_channels=16))
    data = model.data_preprocessor(packed_batch(), True)
    assert 'loss_mask' in model(**data, mode='loss')
    model = build(aux_mask_head=None)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_cls', 'loss_point'}


def test_predict_and_tensor_modes():
    model = build().eval()
    data = model.data_preprocessor(packed_batch(), False)
    with torch.no_grad():
        results = model(**data, mode='predict')
        outs = model(**data, mode='tensor')
    assert len(results) == 2
    for res in results:
        pred = res.pred_instances
        assert set(pred.keys()) == {'points', 'labels', 'scores', 'bboxes'}
        h, w = res.ori_shape
        if len(pred):
            assert pred.points[:, 0].max() <= w - 1
            assert pred.points[:, 1].max() <= h - 1
            assert (pred.scores[:-1] >= pred.scores[1:]).all()
    cls_scores, point_preds, mask_logits = outs
    assert cls_scores.shape == (2, 5, 6, 3)
    assert point_preds.shape == (2, 5, 6, 2)
    assert mask_logits.shape == (2, 1, 10, 12)


def test_predict_rescale_maps_to_original_frame():
    model = build().eval()
    scale = (2., 2.)
    data = model.data_preprocessor(
        packed_batch(shapes=((40, 48), ), scale=scale), False)
    with torch.no_grad():
        scaled = model.predict(data['inputs'],
                               copy.deepcopy(data['data_samples']),
                               rescale=False)[0].pred_instances
        orig = model.predict(data['inputs'], data['data_samples'],
                             rescale=True)[0].pred_instances
    assert len(scaled) == len(orig)
    expected = ((scaled.points + 0.5) / 2 - 0.5).clamp(min=0)
    torch.testing.assert_close(orig.points, expected)


def test_mask_aided_filtering_effect():
    """Same network, filtering on: an all-background nucleus map removes
    every point, an all-foreground one removes none."""
    model = build().eval()
    data = model.data_preprocessor(packed_batch(), False)
    # Force every anchor to be a nucleus so there is something to filter.
    nn.init.zeros_(model.bbox_head.cls_mlp[-1].weight)
    with torch.no_grad():
        model.bbox_head.cls_mlp[-1].bias.copy_(torch.tensor([2., 1., 0.]))
    with torch.no_grad():
        plain = model(**copy.deepcopy(data), mode='predict')
    assert all(len(r.pred_instances) > 0 for r in plain)

    model.test_cfg['mask_filter'] = True
    for bias, expect_all in ((-20., False), (20., True)):
        nn.init.zeros_(model.aux_mask_head.conv_logits.weight)
        nn.init.constant_(model.aux_mask_head.conv_logits.bias, bias)
        with torch.no_grad():
            filtered = model(**copy.deepcopy(data), mode='predict')
        for p, f in zip(plain, filtered):
            n = len(f.pred_instances)
            assert n == (len(p.pred_instances) if expect_all else 0)


def test_mask_probs_are_in_padded_frame():
    model = build().eval()
    data = model.data_preprocessor(packed_batch(), False)
    probs = model.predict_mask_probs(data['inputs'], data['data_samples'])
    assert probs.shape == (2, 40, 48)


def test_config_errors():
    with pytest.raises(ValueError, match='aux_mask_head'):
        build(aux_mask_head=None, test_cfg=dict(mask_filter=True))
    with pytest.raises(ValueError, match='pad_size_divisor'):
        build(data_preprocessor=dict(type='DetDataPreprocessor',
                                     pad_size_divisor=12))


def test_demo_prompter_learns_synthetic_tiles(tmp_path, repo_root):
    """Learning test: the demo prompter (configs/demo/prompter_synthetic.py)
    trained from scratch for 50 iterations on 4 synthetic 128 x 128 tiles
    detects their nuclei with F1 >= 0.9 (PointDetectionMetric, 12 px)."""
    import os.path as osp

    from mmengine.config import Config
    from mmengine.runner import Runner

    from pns_mmdet.datasets.synthetic import make_synthetic_dataset

    data_root = str(tmp_path / 'synthetic')
    make_synthetic_dataset(
        data_root, num_train=4, num_val=0, num_test=0, size=128, seed=0)
    cfg = Config.fromfile(
        osp.join(repo_root, 'configs', 'demo', 'prompter_synthetic.py'))
    dataset = dict(
        data_root=data_root + '/',
        ann_file='annotations/train.json',
        # Memorise the tiles: no augmentation.
        pipeline=cfg.test_pipeline)
    cfg.train_dataloader.dataset.update(dataset)
    cfg.train_dataloader.batch_size = 4
    cfg.test_dataloader.dataset.update(dataset)
    # One batch per epoch, so 50 epochs = 50 iterations. (mmengine's
    # IterBasedTrainLoop sleeps 2 s whenever it restarts the dataloader.)
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=50)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=1000, save_last=False)
    cfg.default_hooks.logger.interval = 1
    cfg.randomness = dict(seed=0)
    cfg.work_dir = str(tmp_path / 'work_dir')
    cfg.load_from = None
    torch.set_num_threads(2)
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    assert metrics['points/f1'] >= 0.9, metrics


def test_channels_last_gives_the_same_predictions():
    model = build().eval()
    model_cl = build(channels_last=True).eval()
    model_cl.load_state_dict(model.state_dict())
    conv = model_cl.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    data = model.data_preprocessor(packed_batch(), False)
    with torch.no_grad():
        ref = model(**copy.deepcopy(data), mode='tensor')
        out = model_cl(**copy.deepcopy(data), mode='tensor')
    for a, b in zip(ref, out):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
