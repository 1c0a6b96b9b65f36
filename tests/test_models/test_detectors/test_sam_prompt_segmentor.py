"""SAMPromptSegmentor: prompts, losses, oracle prediction and learning."""
import math

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks, mask2bbox
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

from pns_mmdet.models.detectors import SAMPromptSegmentor

S = 64  # tiny input side for unit tests (4 x 4 tokens)


@pytest.fixture(autouse=True)
def mmdet_scope():
    init_default_scope('mmdet')  # DetDataPreprocessor is built by scope


def tiny_segmentor(img_size=S, **kwargs):
    cfg = dict(
        img_size=img_size,
        data_preprocessor=dict(
            type='DetDataPreprocessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_size_divisor=img_size,
            pad_mask=True),
        image_encoder=dict(
            type='SAMImageEncoderViT', img_size=img_size, embed_dim=32,
            depth=2, num_heads=2, global_attn_indexes=[1], window_size=2,
            out_chans=32),
        prompt_encoder=dict(
            type='SAMPromptEncoder', embed_dim=32,
            image_embedding_size=(img_size // 16, img_size // 16),
            input_image_size=(img_size, img_size)),
        mask_decoder=dict(
            type='SAMMaskDecoder', transformer_dim=32, transformer_mlp_dim=64,
            transformer_num_heads=2, iou_head_hidden_dim=32))
    cfg.update(kwargs)
    return SAMPromptSegmentor(**cfg)


def make_sample(masks, img_hw=None, labels=None, ori_hw=None):
    """A packed sample (uint8 BGR image + gt_instances) from bool masks."""
    masks = np.asarray(masks, dtype=np.uint8)
    h, w = img_hw or masks.shape[-2:]
    n = len(masks)
    img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    sample = DetDataSample(
        metainfo=dict(img_shape=(h, w), ori_shape=ori_hw or (h, w),
                      img_path=f'toy_{h}x{w}.png'))
    gt = InstanceData()
    gt.masks = BitmapMasks(masks.reshape(n, h, w), h, w)
    gt.labels = torch.as_tensor(
        labels if labels is not None else [0] * n, dtype=torch.long)
    gt.bboxes = torch.zeros(n, 4)
    points = [[np.nonzero(m)[1].mean(), np.nonzero(m)[0].mean()]
              for m in masks]
    gt.points = torch.tensor(points, dtype=torch.float32).reshape(n, 2)
    sample.gt_instances = gt
    return img, sample


def squares(boxes, h=S, w=S):
    masks = np.zeros((len(boxes), h, w), dtype=bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        masks[i, y1:y2, x1:x2] = True
    return masks


def run(model, items, training):
    data = dict(
        inputs=[i for i, _ in items], data_samples=[s for _, s in items])
    return model.data_preprocessor(data, training)


def test_mask_losses_hand_computed():
    model = tiny_segmentor()
    l3 = math.log(3.)  # sigmoid(+-ln 3) = 0.75 / 0.25
    logits = torch.tensor([[[l3, l3], [-l3, 0.]], [[l3, -l3], [-l3, -l3]]],
                          requires_grad=True)
    gts = torch.tensor([[[1., 1.], [0., 1.]], [[0., 0.], [1., 0.]]])
    pred_iou = torch.tensor([0.5, 0.25], requires_grad=True)
    losses = model.mask_losses(logits, pred_iou, gts)
    # Focal without alpha, gamma 2: a = p 0.75 & t 1 (or p 0.25 & t 0),
    # b = p 0.5 & t 1, c = p 0.75 & t 0 (or p 0.25 & t 1); mean over the 8
    # pixels, times omega = 20.
    a = (0.25**2) * math.log(4 / 3)
    b = (0.5**2) * math.log(2)
    c = (0.75**2) * math.log(4)
    focal = 20 * (3 * a + b + 2 * a + 2 * c) / 8
    # Dice (eps 1): mask 0: 2*2.0+1 / (2.25+3+1) = 0.8; mask 1:
    # 2*0.25+1 / (1.5+1+1) = 3/7; loss = mean(1 - d).
    dice = ((1 - 0.8) + (1 - 3 / 7)) / 2
    # IoU targets of the thresholded masks (logit > 0): 2/3 and 0.
    mse = ((0.5 - 2 / 3)**2 + 0.25**2) / 2
    assert losses['loss_focal'].item() == pytest.approx(focal, rel=1e-6)
    assert losses['loss_dice'].item() == pytest.approx(dice, rel=1e-6)
    assert losses['loss_iou'].item() == pytest.approx(mse, rel=1e-6)
    # The IoU target is detached: the IoU loss reaches only pred_iou.
    losses['loss_iou'].backward()
    assert logits.grad is None
    assert torch.allclose(pred_iou.grad,
                          torch.tensor([0.5 - 2 / 3, 0.25]), atol=1e-6)


def test_training_prompts_z_and_nearest_negative(monkeypatch):
    # Four squares on a row: nearest other nucleus is unambiguous
    # (A<->B, C<->D) whatever interior points are drawn.
    boxes = [(2, 28, 7, 33), (12, 28, 17, 33), (40, 28, 45, 33),
             (56, 28, 61, 33)]
    masks = squares(boxes)
    model = tiny_segmentor(
        train_cfg=dict(num_prompts_per_img=3, num_neg_prompts=1))
    calls, targets = [], []
    real_decode, real_losses = model.decode_prompts, model.mask_losses

    def decode(emb, coords, labels, chunk_size=256, upsample=True):
        calls.append((coords.clone(), labels.clone()))
        return real_decode(emb, coords, labels, chunk_size, upsample)

    def losses(logits, ious, gts, thr=0.):
        targets.append(gts.clone())
        return real_losses(logits, ious, gts, thr)

    monkeypatch.setattr(model, 'decode_prompts', decode)
    monkeypatch.setattr(model, 'mask_losses', losses)
    torch.manual_seed(0)
    data = run(model, [make_sample(masks)], training=True)
    model.loss(data['inputs'], data['data_samples'])
    (coords, labels), = calls
    assert coords.shape == (3, 2, 2)  # Z = 3 of 4 nuclei, K = 1
    assert torch.equal(labels, torch.tensor([[1, 0]] * 3))
    nearest = {0: 1, 1: 0, 2: 3, 3: 2}
    gt_masks = torch.from_numpy(masks)
    for prompt, target in zip(coords, targets[0]):
        (px, py), (nx, ny) = prompt.long().tolist()
        idx = [i for i in range(4) if torch.equal(gt_masks[i].float(),
                                                  target)]
        assert len(idx) == 1 and target[py, px] == 1  # positive inside
        assert gt_masks[nearest[idx[0]], ny, nx]  # negative in neighbour
    # One nucleus: the negative slot is padding.
    calls.clear()
    data = run(model, [make_sample(masks[:1])], training=True)
    model.loss(data['inputs'], data['data_samples'])
    assert torch.equal(calls[0][1], torch.tensor([[1, -1]]))


def test_loss_backward_and_frozen_prompt_encoder():
    torch.manual_seed(0)
    model = tiny_segmentor()
    model.train()
    items = [make_sample(squares([(5, 5, 15, 12), (30, 30, 44, 40)])),
             make_sample(squares([(40, 2, 60, 20)]))]
    data = run(model, items, training=True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_focal', 'loss_dice', 'loss_iou'}
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert all(p.grad is None for p in model.prompt_encoder.parameters())
    assert not model.prompt_encoder.training
    # Every trainable parameter gets a gradient (DDP-safe without
    # find_unused_parameters): the unused multimask heads are frozen.
    unused = [n for n, p in model.named_parameters()
              if p.requires_grad and p.grad is None]
    assert unused == []
    hyper = model.mask_decoder.output_hypernetworks_mlps
    assert not any(p.requires_grad for p in hyper[1].parameters())


def test_frozen_image_encoder_and_empty_batch():
    model = tiny_segmentor(
        image_encoder=dict(
            type='SAMImageEncoderViT', img_size=S, embed_dim=32, depth=1,
            num_heads=2, global_attn_indexes=[0], out_chans=32,
            frozen=True))
    model.train()
    assert not model.image_encoder.training
    items = [make_sample(np.zeros((0, S, S), dtype=bool))]
    data = run(model, items, training=True)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert all(v.item() == 0 for v in losses.values())
    sum(losses.values()).backward()  # still a graph to backpropagate
    data = run(model, [make_sample(squares([(3, 3, 9, 9)]))], training=True)
    losses = model.loss(data['inputs'], data['data_samples'])
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.image_encoder.parameters())


def test_predict_oracle_outputs():
    torch.manual_seed(0)
    model = tiny_segmentor().eval()
    masks = squares([(5, 5, 15, 12), (30, 30, 44, 40), (50, 8, 60, 30)],
                    h=50, w=64)
    items = [make_sample(masks, labels=[2, 0, 1])]
    data = run(model, items, training=False)
    assert data['inputs'].shape[-2:] == (64, 64)  # padded to img_size
    with torch.no_grad():
        out = model(**data, mode='predict')[0].pred_instances
    assert out.masks.shape == (3, 50, 64) and out.masks.dtype == torch.bool
    assert out.scores.shape == (3, ) and out.scores.dtype == torch.float32
    # Ascending score (instance i = id i + 1 of the map); each instance
    # keeps the label and point of its GT prompt.
    assert torch.equal(out.scores, out.scores.sort().values)
    gt_points = items[0][1].gt_instances.points
    order = [int((gt_points == p).all(1).nonzero()) for p in out.points]
    assert sorted(order) == [0, 1, 2]
    assert out.labels.tolist() == [[2, 0, 1][i] for i in order]
    assert torch.equal(out.bboxes, mask2bbox(out.masks))
    inst_map = model.predict(data['inputs'], data['data_samples'])[
        0].pred_inst_map.sem_seg[0]
    assert int(inst_map.max()) == 3
    # Same logits as decode_prompts on the padded input, cropped.
    with torch.no_grad():
        emb = model.encode_image(data['inputs'])
        from pns_mmdet.models.utils import build_point_prompts
        coords, labels = build_point_prompts(gt_points, 1)
        logits, ious = model.decode_prompts(emb, coords, labels)
    assert torch.equal(out.masks, logits[order, :50] > 0)
    assert torch.allclose(out.scores, ious[order])
    # No nuclei: empty but well-formed.
    data = run(model, [make_sample(np.zeros((0, 40, 40), bool))], False)
    with torch.no_grad():
        out = model.predict(data['inputs'], data['data_samples'])[0]
    assert out.pred_instances.masks.shape == (0, 40, 40)
    assert out.pred_instances.bboxes.shape == (0, 4)
    # tensor mode: embeddings and per-image (logits, IoU)
    data = run(model, items, training=False)
    with torch.no_grad():
        emb, outs = model(**data, mode='tensor')
    assert emb.shape == (1, 32, 4, 4) and outs[0][0].shape == (3, 64, 64)


def test_predict_tiles_large_inputs(monkeypatch):
    """Inputs larger than img_size are cut into overlapping tiles; each
    prompt is decoded once, in the tile where it is most central, and its
    mask is pasted back at the tile's offset (the engine's 'oracle'
    policy)."""
    model = tiny_segmentor(test_cfg=dict(tile_overlap=16)).eval()
    h, w = 100, 150  # tiles: x 0, 48, 86; y 0, 36 (stride 48)
    centres = [(10, 10), (70, 20), (140, 90), (60, 60), (100, 50)]
    masks = squares([(x - 3, y - 3, x + 4, y + 4) for x, y in centres],
                    h=h, w=w)
    items = [make_sample(masks)]
    encodes, seen = [], []

    def encode(x):
        encodes.append(x.shape)
        return torch.zeros(x.size(0), 32, 4, 4)

    def decode(emb, coords, labels, chunk_size=256, upsample=True):
        # Disc of radius 5 around each positive point, in tile pixels.
        seen.append((coords.clone(), labels.clone()))
        yy, xx = torch.meshgrid(torch.arange(S), torch.arange(S),
                                indexing='ij')
        d2 = ((xx[None] - coords[:, 0, 0, None, None])**2 +
              (yy[None] - coords[:, 0, 1, None, None])**2)
        return 25. - d2.float(), torch.full((len(coords), ), 0.5)

    monkeypatch.setattr(model, 'encode_image', encode)
    monkeypatch.setattr(model, 'decode_prompts', decode)
    data = run(model, items, training=False)
    assert data['inputs'].shape[-2:] == (128, 192)
    out = model.predict(data['inputs'], data['data_samples'])[0]
    pred = out.pred_instances
    assert pred.masks.shape == (5, h, w)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing='ij')
    for mask, (x, y) in zip(pred.masks, pred.points.tolist()):
        disc = (xx - x)**2 + (yy - y)**2 < 25
        assert torch.equal(mask, disc), (x, y)
    assert sorted(map(tuple, pred.points.tolist())) == sorted(centres)
    assert sum(len(c) for c, _ in seen) == 5  # each prompt decoded once
    # Only the tiles owning a prompt are encoded (4 of the 6), each once.
    assert sum(s[0] for s in encodes) == 4 and all(
        s[1:] == (3, S, S) for s in encodes)
    # Negatives: the nearest prompt inside the same tile, in tile pixels;
    # (10, 10) has (60, 60) in its tile [0, 64) x [0, 64), not (70, 20).
    for coords, labels in seen:
        negs = coords[:, 1][labels[:, 1] == 0]
        assert ((negs >= 0) & (negs <= S - 1)).all()
    first = torch.cat([c for c, _ in seen])
    row = (first[:, 0] == first.new_tensor([10., 10.])).all(1)
    assert first[row, 1].tolist() == [[60., 60.]]


def test_predict_rescales_to_ori_shape():
    torch.manual_seed(0)
    model = tiny_segmentor().eval()
    items = [make_sample(squares([(10, 10, 30, 30)]), ori_hw=(128, 128))]
    data = run(model, items, training=False)
    with torch.no_grad():
        # predict() writes into the samples: keep each result apart.
        out = model.predict(data['inputs'],
                            data['data_samples'])[0].pred_instances
        kept = model.predict(data['inputs'], data['data_samples'],
                             rescale=False)[0].pred_instances
    assert out.masks.shape == (1, 128, 128)
    assert kept.masks.shape == (1, 64, 64)
    # Pixel centres: (p + 0.5) * 2 - 0.5.
    assert torch.allclose(out.points, kept.points * 2 + 0.5)
    # A 2x nearest resize of pixel centres repeats every pixel 2 x 2.
    expected = kept.masks.repeat_interleave(2, 1).repeat_interleave(2, 2)
    assert torch.equal(out.masks, expected)


def test_bfloat16_autocast_predict():
    torch.manual_seed(0)
    model = tiny_segmentor(test_cfg=dict(autocast_dtype='bfloat16')).eval()
    items = [make_sample(squares([(5, 5, 15, 12), (30, 30, 44, 40)]))]
    data = run(model, items, training=False)
    with torch.no_grad():
        out = model.predict(data['inputs'], data['data_samples'])[0]
    assert out.pred_instances.masks.dtype == torch.bool
    assert out.pred_instances.scores.dtype == torch.float32


def test_bad_inputs_fail_clearly():
    model = tiny_segmentor()
    with pytest.raises(ValueError, match=r'expects \(B, 3, 64, 64\)'):
        model.encode_image(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r'\(N, P, 2\)'):
        model.decode_prompts(torch.zeros(1, 32, 4, 4), torch.zeros(3, 2),
                             torch.ones(3, 1))
    with pytest.raises(ValueError, match='one image embedding'):
        model.decode_prompts(torch.zeros(2, 32, 4, 4), torch.zeros(3, 1, 2),
                             torch.ones(3, 1))
    with pytest.raises(ValueError, match='image_embedding_size'):
        tiny_segmentor(prompt_encoder=dict(
            type='SAMPromptEncoder', embed_dim=32,
            image_embedding_size=(16, 16), input_image_size=(S, S)))
    with pytest.raises(ValueError, match='autocast_dtype'):
        tiny_segmentor(test_cfg=dict(autocast_dtype='int8'))
    img, sample = make_sample(squares([(3, 3, 9, 9)]))
    del sample.gt_instances.points
    data = run(model, [(img, sample)], training=False)
    with pytest.raises(KeyError, match='gt_instances.points is missing'):
        model.predict(data['inputs'], data['data_samples'])


def synthetic_samples(size, num_tiles, seed):
    """Packed samples of synthetic H&E-like tiles (many touching nuclei)."""
    from pns_mmdet.datasets.synthetic import generate_tile
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(num_tiles):
        tile = generate_tile(rng, size=size)
        inst = tile['inst_map']
        masks = np.stack([inst == i for i in np.unique(inst) if i])
        img, sample = make_sample(masks)
        # BGR like every mmdet pipeline.
        img[:] = torch.from_numpy(tile['image'][..., ::-1].copy()).permute(
            2, 0, 1)
        items.append((img, sample))
    return items


def mean_mask_iou(model, items):
    model.eval()
    data = run(model, items, training=False)
    with torch.no_grad():
        results = model.predict(data['inputs'], data['data_samples'])
    ious = []
    for result, (_, sample) in zip(results, items):
        pred = result.pred_instances
        gt = sample.gt_instances.masks.to_tensor(torch.bool, 'cpu')
        # Instance of each GT prompt (none when its mask came out empty).
        for point, gt_mask in zip(sample.gt_instances.points, gt):
            hit = (pred.points == point).all(1).nonzero().flatten()
            if len(hit) == 0:
                ious.append(0.0)
                continue
            mask = pred.masks[int(hit[0])]
            inter = (mask & gt_mask).sum()
            ious.append(float(inter / (mask | gt_mask).sum().clamp(min=1)))
    return float(np.mean(ious))


def test_tiny_segmentor_learns_synthetic_nuclei(repo_root):
    """The tiny config's segmentor, trained from scratch on 3 synthetic
    128-px tiles with ground-truth prompts (random interior positives, 1
    nearest negative), segments them from centroid prompts with mean mask
    IoU >= 0.8 (~0.94 here after 300 steps)."""
    import os.path as osp

    from mmengine.config import Config
    from mmdet.registry import MODELS
    cfg = Config.fromfile(osp.join(repo_root, 'configs',
                                   'segmentor_tiny_test.py'))
    threads = torch.get_num_threads()
    # One thread: tiny ops run several times faster without OpenMP
    # contention on a shared 2-core machine.
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        items = synthetic_samples(size=128, num_tiles=3, seed=0)
        assert sum(len(s.gt_instances) for _, s in items) >= 15
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=2e-3, weight_decay=1e-4)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, [220], 0.1)
        before = mean_mask_iou(model, items)
        model.train()
        for _ in range(300):
            data = run(model, items, training=True)
            losses = model.loss(data['inputs'], data['data_samples'])
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            scheduler.step()
        after = mean_mask_iou(model, items)
    finally:
        torch.set_num_threads(threads)
    print(f'mean mask IoU: {before:.3f} untrained -> {after:.3f} trained')
    assert before < 0.2
    assert after >= 0.8


def test_tiny_config_trains_and_tests_with_runner(repo_root, synthetic_coco,
                                                  tmp_path):
    """configs/segmentor_tiny_test.py runs through mmengine's Runner: a few
    training iterations, then the oracle test with NucleusInstanceMetric on
    256-px tiles (tiled at 128 px)."""
    import os.path as osp

    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(osp.join(repo_root, 'configs',
                                   'segmentor_tiny_test.py'))
    cfg.work_dir = str(tmp_path)
    for loader in ('train_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = synthetic_coco
    cfg.test_dataloader.dataset.indices = 1  # one 256-px tile = 9 tiles
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    assert {'nuclei/pq', 'nuclei/aji'} <= set(metrics)
    assert all(0 <= metrics[k] <= 1 for k in ('nuclei/pq', 'nuclei/aji'))


def test_embedding_cache_and_training_autocast(monkeypatch):
    frozen_encoder = dict(
        type='SAMImageEncoderViT', img_size=S, embed_dim=32, depth=1,
        num_heads=2, global_attn_indexes=[0], out_chans=32, frozen=True)
    cache = dict(type='EmbeddingCache', max_entries=2)
    with pytest.raises(ValueError, match='needs a frozen image encoder'):
        tiny_segmentor(train_cfg=dict(embedding_cache=cache))
    with pytest.raises(ValueError, match='embedding_cache_size is gone'):
        tiny_segmentor(image_encoder=frozen_encoder,
                       train_cfg=dict(embedding_cache_size=2))
    with pytest.raises(ValueError, match='AutocastOptimWrapper'):
        tiny_segmentor(train_cfg=dict(autocast_dtype='bfloat16'))
    model = tiny_segmentor(image_encoder=frozen_encoder,
                           train_cfg=dict(embedding_cache=cache))
    model.train()
    encoded = []
    real_encode = model.encode_image

    def encode(x):
        encoded.append(len(x))
        return real_encode(x)

    monkeypatch.setattr(model, 'encode_image', encode)
    torch.manual_seed(0)
    a, b, c = (make_sample(squares([(3, 3, 12, 12)])) for _ in range(3))
    for items, expected in (([a, b], [2]), ([a, b], []), ([b, c], [1]),
                            ([a], [1])):  # size 2: c evicted a
        encoded.clear()
        data = run(model, items, training=True)
        # As AutocastOptimWrapper runs the forward pass.
        with torch.autocast('cpu', dtype=torch.bfloat16):
            losses = model.loss(data['inputs'], data['data_samples'])
        assert encoded == expected
        assert all(v.dtype == torch.float32 for v in losses.values())
        sum(losses.values()).backward()
    assert len(model.embedding_cache) == 2
    # Cached embeddings equal fresh ones (same autocast).
    data = run(model, [a], training=True)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        fresh = real_encode(data['inputs'])
    assert torch.equal(
        model.embedding_cache.encode(data['inputs'], real_encode), fresh)
