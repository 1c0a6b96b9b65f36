"""PromptNucSeg: mmdet modes, checkpoint loading, and exact tiling.

Random tiny sub-models cannot segment, so the stitching tests swap in
deterministic stubs: the "image" carries each nucleus' id in channel 0, the
stub segmentor returns the pixels of the tile that share the prompt's id
(the visible part of that nucleus in the tile) and the stub prompter
returns the centroid of every nucleus part visible in a tile. Tiled and
single-pass runs over the same image must then agree exactly.
"""
import copy

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from torch import nn

import pns_mmdet  # noqa: F401  (registers the components)
from pns_mmdet.models.inference import part_input

DP = dict(
    type='DetDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True)

TINY_PROMPTER = dict(
    type='NucleusPrompter',
    data_preprocessor=dict(DP, pad_size_divisor=8),
    backbone=dict(
        type='ResNet',
        depth=18,
        base_channels=8,
        out_indices=(0, 1, 2, 3),
        init_cfg=None),
    neck=dict(
        type='FPN', in_channels=[8, 16, 32, 64], out_channels=16,
        num_outs=4),
    bbox_head=dict(
        type='PointAnchorHead',
        num_classes=2,
        in_channels=16,
        feat_channels=16,
        hidden_dim=16,
        stride=8),
    test_cfg=dict(nms_radius=6.0))

TINY_SEGMENTOR = dict(
    type='SAMPromptSegmentor',
    data_preprocessor=DP,
    img_size=64,
    image_encoder=dict(
        type='SAMImageEncoderViT',
        img_size=64,
        embed_dim=32,
        depth=2,
        num_heads=2,
        global_attn_indexes=(1, ),
        window_size=3,
        out_chans=32),
    prompt_encoder=dict(
        type='SAMPromptEncoder',
        embed_dim=32,
        image_embedding_size=(4, 4),
        input_image_size=(64, 64)),
    mask_decoder=dict(
        type='SAMMaskDecoder',
        transformer_dim=32,
        transformer_depth=1,
        transformer_mlp_dim=64,
        transformer_num_heads=2,
        iou_head_hidden_dim=16))


def build_model(**kwargs):
    init_default_scope('mmdet')
    cfg = dict(
        type='PromptNucSeg',
        data_preprocessor=dict(type='DetDataPreprocessor', bgr_to_rgb=True),
        prompter=copy.deepcopy(TINY_PROMPTER),
        segmentor=copy.deepcopy(TINY_SEGMENTOR),
        test_cfg=dict(prompter_tile_size=96))
    cfg.update(kwargs)
    return MODELS.build(cfg)


def packed_inputs(model, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.)))
    return model.data_preprocessor(
        dict(inputs=[img], data_samples=[sample]), False)


@pytest.fixture(scope='module')
def tiny_model():
    torch.manual_seed(0)
    return build_model()


# ---------------------------------------------------------------- modes
class DiscSegmentor(nn.Module):
    """Disc of radius 5 around each positive prompt, in tile pixels."""

    def __init__(self, img_size):
        super().__init__()
        self.img_size = img_size

    def encode_image(self, inputs):
        return inputs[:, :1]

    def decode_prompts(self, emb, coords, labels, chunk_size=256,
                       upsample=True):
        s = self.img_size
        yy, xx = torch.meshgrid(
            torch.arange(s), torch.arange(s), indexing='ij')
        c = coords[:, 0]
        d2 = (xx[None] - c[:, 0, None, None])**2 + (
            yy[None] - c[:, 1, None, None])**2
        return 25. - d2, (c[:, 0] * 7 + c[:, 1] * 3) % 100 / 100.


def test_predict_contract_any_size(tiny_model):
    model = copy.deepcopy(tiny_model)
    model.segmentor = DiscSegmentor(64)
    data = packed_inputs(model, 150, 130)
    out = model(**data, mode='predict')
    pred = out[0].pred_instances
    inst_map = out[0].pred_inst_map.sem_seg
    assert inst_map.shape == (1, 150, 130) and inst_map.dtype == torch.int32
    class_map = out[0].pred_class_map.sem_seg
    assert class_map.shape == (1, 150, 130)
    n = len(pred)
    assert n > 5
    assert pred.masks.shape == (n, 150, 130) and pred.masks.dtype == torch.bool
    assert pred.bboxes.shape == (n, 4) and pred.points.shape == (n, 2)
    assert pred.labels.dtype == torch.long
    # Ids 1..n in ascending score order, every instance visible, masks
    # painted in that order, class map = label + 1.
    assert torch.all(pred.scores[1:] >= pred.scores[:-1])
    assert torch.equal(inst_map[0].unique()[1:], torch.arange(1, n + 1,
                                                          dtype=torch.int32))
    painted = torch.zeros((150, 130), dtype=torch.int32)
    for i, m in enumerate(pred.masks):
        painted[m] = i + 1
    assert torch.equal(painted, inst_map[0])
    assert torch.equal(class_map[0].long(),
                       torch.cat([torch.zeros(1, dtype=torch.long),
                                  pred.labels + 1])[inst_map[0].long()])
    # Tight boxes (exclusive maxima) and prompts inside their masks.
    ys, xs = torch.nonzero(pred.masks[0], as_tuple=True)
    assert pred.bboxes[0].tolist() == [
        xs.min().item(), ys.min().item(), xs.max().item() + 1,
        ys.max().item() + 1
    ]
    px = pred.points.round().long()
    assert pred.masks[torch.arange(n), px[:, 1], px[:, 0]].all()


def test_predict_runs_with_real_tiny_parts(tiny_model):
    data = packed_inputs(tiny_model, 70, 60)
    out = tiny_model(**data, mode='predict')
    assert out[0].pred_inst_map.sem_seg.shape == (1, 70, 60)
    assert len(out[0].pred_instances) == int(
        out[0].pred_inst_map.sem_seg.max())


def test_tensor_mode_and_loss_refused(tiny_model):
    data = packed_inputs(tiny_model, 40, 50)
    maps = tiny_model(**data, mode='tensor')[0]
    assert maps.shape == (1, 40, 50)
    with pytest.raises(NotImplementedError, match='separately'):
        tiny_model(**data, mode='loss')


def test_image_smaller_than_a_tile(tiny_model):
    # 20 x 30 is smaller than the segmentor tile (64) and not a multiple of
    # the prompter stride (8): both are padded internally.
    data = packed_inputs(tiny_model, 20, 30)
    out = tiny_model(**data, mode='predict')
    assert out[0].pred_inst_map.sem_seg.shape == (1, 20, 30)


def test_unknown_test_cfg_key():
    with pytest.raises(ValueError, match='unknown test_cfg keys'):
        build_model(test_cfg=dict(tile=3))


def test_normalising_preprocessor_rejected():
    with pytest.raises(ValueError, match='must not normalise'):
        build_model(data_preprocessor=DP)


def test_each_part_gets_its_own_normalisation(tiny_model):
    # The segmentor is LiteMedSAM-like ([0, 1] scaling, trained on BGR
    # here), the prompter uses ImageNet statistics on RGB.
    init_default_scope('mmdet')
    seg = copy.deepcopy(TINY_SEGMENTOR)
    seg['data_preprocessor'] = dict(
        type='DetDataPreprocessor', mean=[0., 0., 0.], std=[255.] * 3)
    model = build_model(segmentor=seg)
    rgb = torch.tensor([10., 20., 30.]).view(3, 1, 1).expand(3, 2, 2)
    p = part_input(rgb, model.prompter)
    expected = (torch.tensor([10., 20., 30.]) - torch.tensor(
        [123.675, 116.28, 103.53])) / torch.tensor([58.395, 57.12, 57.375])
    assert torch.allclose(p[:, 0, 0], expected)
    s = part_input(rgb, model.segmentor)
    assert torch.allclose(s[:, 0, 0], torch.tensor([30., 20., 10.]) / 255.)


# ------------------------------------------------------------ checkpoints
def test_checkpoints_load_strictly(tmp_path, tiny_model):
    p_path = tmp_path / 'prompter.pth'
    s_path = tmp_path / 'segmentor.pth'
    # mmengine layout (state_dict + meta) and a bare state dict.
    torch.save(
        dict(state_dict=tiny_model.prompter.state_dict(), meta={}), p_path)
    torch.save(tiny_model.segmentor.state_dict(), s_path)
    model = build_model(
        prompter_checkpoint=str(p_path), segmentor_checkpoint=str(s_path))
    for a, b in zip(model.state_dict().values(),
                    tiny_model.state_dict().values()):
        assert torch.equal(a, b)


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='prompter_checkpoint'):
        build_model(prompter_checkpoint=str(tmp_path / 'nope.pth'))


def test_mismatched_checkpoint_names_keys(tmp_path, tiny_model):
    state = tiny_model.segmentor.state_dict()
    state.pop('mask_decoder.iou_token.weight')
    state['extra.weight'] = torch.zeros(1)
    key = 'image_encoder.patch_embed.proj.weight'
    state[key] = torch.zeros(3)
    path = tmp_path / 'bad.pth'
    torch.save(dict(state_dict=state), path)
    with pytest.raises(RuntimeError) as err:
        build_model(segmentor_checkpoint=str(path))
    msg = str(err.value)
    assert 'segmentor_checkpoint' in msg and str(path) in msg
    assert 'missing keys: mask_decoder.iou_token.weight' in msg
    assert 'unexpected keys: extra.weight' in msg
    assert key in msg and 'shape mismatches' in msg


# ------------------------------------------------------------ stitching
class StubSegmentor(nn.Module):
    """Returns the tile pixels sharing the prompt pixel's id (channel 0)."""

    def __init__(self, img_size):
        super().__init__()
        self.img_size = img_size
        self.encoded = 0

    def encode_image(self, inputs):
        assert inputs.shape[-2:] == (self.img_size, self.img_size)
        self.encoded += len(inputs)
        return inputs[:, :1].clone()

    def decode_prompts(self, emb, coords, labels, chunk_size=256,
                       upsample=True):
        ids_img = emb[0, 0]
        pos = coords[:, 0].round().long()
        ids = ids_img[pos[:, 1], pos[:, 0]]
        masks = (ids_img[None] == ids[:, None, None]) & (ids[:, None, None]
                                                          > 0)
        logits = masks.float() * 20 - 10
        # Deterministic, distinct scores.
        return logits, 0.5 + ids / 1000.


class StubPrompter(nn.Module):
    """Centroid of every nucleus part visible in the (unpadded) tile."""

    stride = 8
    test_cfg = dict(nms_radius=4.0)

    def predict(self, batch, samples, rescale=False):
        for img, sample in zip(batch, samples):
            th, tw = sample.metainfo['img_shape']
            ids_img = img[0, :th, :tw].round().long()
            pts, labels = [], []
            for i in ids_img.unique().tolist():
                if i == 0:
                    continue
                ys, xs = torch.nonzero(ids_img == i, as_tuple=True)
                c = torch.stack([xs.float().mean(), ys.float().mean()])
                # nearest pixel of the part (centroid may be outside)
                d = (xs - c[0])**2 + (ys - c[1])**2
                k = d.argmin()
                pts.append(torch.stack([xs[k], ys[k]]).float())
                labels.append(i % 3)
            sample.pred_instances = InstanceData(
                points=torch.stack(pts) if pts else torch.zeros((0, 2)),
                labels=torch.tensor(labels, dtype=torch.long),
                scores=torch.ones(len(pts)))
        return samples


def disc_image(h, w, centres, radius):
    yy, xx = np.mgrid[:h, :w]
    ids = np.zeros((h, w), np.int64)
    for i, (cx, cy) in enumerate(centres, 1):
        ids[(xx - cx)**2 + (yy - cy)**2 <= radius**2] = i
    return ids


def nucleus_centres():
    rng = np.random.default_rng(0)
    centres = [(int(x), int(y)) for x, y in rng.integers(5, 595, (80, 2))]
    # Nuclei straddling the tile borders of the 256 / 192 grid
    # (tile starts 0, 192, 344): inner edges at 192, 256, 344, 448.
    for b in (192, 256, 344, 448):
        centres += [(b, 300), (b - 3, 100), (150, b + 2), (b, b)]
    return centres


def stitching_case():
    ids = disc_image(600, 600, nucleus_centres(), radius=9)
    img = torch.zeros((3, 600, 600))
    img[0] = torch.from_numpy(ids).float()
    # Prompts: one pixel per visible nucleus, nearest its centroid.
    pts, labels = [], []
    for i in np.unique(ids)[1:]:
        ys, xs = np.nonzero(ids == i)
        k = np.argmin((xs - xs.mean())**2 + (ys - ys.mean())**2)
        pts.append((xs[k], ys[k]))
        labels.append(int(i) % 3)
    prompts = InstanceData(
        points=torch.tensor(pts, dtype=torch.float32),
        labels=torch.tensor(labels))
    return ids, img, prompts


def instance_ious(map_a, map_b):
    """IoU of every instance of a with its best match in b."""
    ious = []
    for i in np.unique(map_a)[1:]:
        m = map_a == i
        j = np.bincount(map_b[m]).argmax()
        if j == 0:
            ious.append(0.)
            continue
        n = map_b == j
        ious.append((m & n).sum() / (m | n).sum())
    return np.array(ious)


@pytest.mark.parametrize('policy', ['all', 'central'])
def test_tiled_segmentation_equals_single_pass(tiny_model, policy):
    ids, img, prompts = stitching_case()
    tiled = copy.deepcopy(tiny_model)
    tiled.segmentor = StubSegmentor(256)
    tiled.test_cfg.update(decode_policy=policy, encode_batch=3)
    whole = copy.deepcopy(tiled)
    whole.segmentor = StubSegmentor(640)  # one tile covers the image
    res_t, map_t = tiled.segment_points(img, prompts)
    res_w, map_w = whole.segment_points(img, prompts)
    assert tiled.segmentor.encoded == 9 and whole.segmentor.encoded == 1
    map_t, map_w = map_t.numpy(), map_w.numpy()
    # The single pass reproduces the ground truth; the tiled one matches it
    # nucleus by nucleus, including those crossing tile borders.
    assert len(res_w) == len(np.unique(ids)) - 1
    assert instance_ious(ids, map_w).min() == 1.0
    ious = instance_ious(map_w, map_t)
    assert len(res_t) == len(res_w)
    assert ious.min() > 0.95
    # The per-instance fields follow the maps.
    assert torch.equal(res_t.masks.sum((1, 2)),
                       torch.bincount(torch.from_numpy(map_t).flatten(),
                                      minlength=len(res_t) + 1)[1:])
    assert sorted(res_t.labels.tolist()) == sorted(res_w.labels.tolist())


def test_tiles_without_prompts_are_not_encoded(tiny_model):
    ids = disc_image(600, 600, [(100, 100)], radius=9)
    img = torch.zeros((3, 600, 600))
    img[0] = torch.from_numpy(ids).float()
    model = copy.deepcopy(tiny_model)
    model.segmentor = StubSegmentor(256)
    res, inst = model.segment_points(
        img,
        InstanceData(
            points=torch.tensor([[100., 100.]]), labels=torch.tensor([1])))
    assert model.segmentor.encoded == 1 and len(res) == 1
    assert int((inst == 1).sum()) == int((ids == 1).sum())


def test_no_prompts_gives_empty_result(tiny_model):
    model = copy.deepcopy(tiny_model)
    model.segmentor = StubSegmentor(256)
    res, inst = model.segment_points(
        torch.zeros((3, 300, 200)),
        InstanceData(
            points=torch.zeros((0, 2)),
            labels=torch.zeros(0, dtype=torch.long)))
    assert len(res) == 0 and res.masks.shape == (0, 300, 200)
    assert inst.shape == (300, 200) and int(inst.max()) == 0
    assert model.segmentor.encoded == 0


def test_edge_masks_dropped_and_hidden_instances_removed(tiny_model):
    model = copy.deepcopy(tiny_model)
    model.segmentor = StubSegmentor(256)
    ids = np.zeros((256, 300), np.int64)
    ids[100:110, 100:110] = 1
    ids[100:110, 100:110][2:5, 2:5] = 2  # inside 1
    img = torch.zeros((3, 256, 300))
    img[0] = torch.from_numpy(ids).float()
    res, inst = model.segment_points(
        img,
        InstanceData(
            points=torch.tensor([[100., 100.], [103., 103.]]),
            labels=torch.tensor([0, 1])))
    # Id 2 (score 0.502) is painted after id 1 (0.501), both visible.
    assert res.scores.tolist() == pytest.approx([0.501, 0.502])
    assert inst.numpy().tolist() == np.where(ids == 1, 1, ids).tolist()


def test_prompter_tiling_matches_whole_image(tiny_model):
    centres = nucleus_centres()
    ids = disc_image(600, 600, centres, radius=9)
    img = torch.zeros((3, 600, 600))
    img[0] = torch.from_numpy(ids).float()
    model = copy.deepcopy(tiny_model)
    model.prompter = StubPrompter()
    model.test_cfg.update(prompter_tile_size=1024)
    whole = model.predict_points(img)
    model.test_cfg.update(prompter_tile_size=160, prompter_tile_overlap=48)
    tiled = model.predict_points(img)
    assert len(tiled.points) == len(whole.points)
    d = torch.cdist(tiled.points, whole.points)
    assert float(d.min(dim=1).values.max()) == 0.0


# ------------------------------------------------------- fast encoder
def test_fast_window_attention_switch(tiny_model):
    from pns_mmdet.models.sam import PaddedWindowBlock
    assert all(
        isinstance(b, PaddedWindowBlock)
        for b in tiny_model.segmentor.image_encoder.blocks)
    # The image encoder owns the switch.
    seg = copy.deepcopy(TINY_SEGMENTOR)
    seg['image_encoder']['padded_window_attention'] = False
    slow = build_model(segmentor=seg)
    assert not any(
        isinstance(b, PaddedWindowBlock)
        for b in slow.segmentor.image_encoder.blocks)


def test_central_policy_frees_embeddings_row_by_row(tiny_model):
    import weakref

    class CountingSegmentor(StubSegmentor):

        def __init__(self):
            super().__init__(256)
            self.alive = 0
            self.max_alive = 0

        def encode_image(self, inputs):
            out = super().encode_image(inputs)
            self.alive += 1
            self.max_alive = max(self.max_alive, self.alive)
            weakref.finalize(out, self._freed)
            return out

        def _freed(self):
            self.alive -= 1

    # 7 tile rows x 2 tile columns, a nucleus in every tile and on every
    # inner tile border.
    h, w = 1400, 400
    centres = [(x, y) for y in range(20, h, 96) for x in (60, 200, 340)]
    ids = disc_image(h, w, centres, radius=9)
    img = torch.zeros((3, h, w))
    img[0] = torch.from_numpy(ids).float()
    pts = torch.tensor(centres, dtype=torch.float32)
    model = copy.deepcopy(tiny_model)
    model.segmentor = CountingSegmentor()
    model.test_cfg.update(decode_policy='central', encode_batch=1)
    res, inst = model.segment_points(
        img, InstanceData(points=pts, labels=torch.zeros(len(pts)).long()))
    assert model.segmentor.encoded == 14  # every tile once, never twice
    assert model.segmentor.max_alive <= 3 * 2 + 1
    assert len(res) == len(centres)
    assert instance_ious(ids, inst.numpy()).min() == 1.0


def test_lowres_paste_equals_full_upsampling(tiny_model):
    """Upsampling each mask around itself gives the same instances as
    upsampling every decoder output to the tile (real tiny SAM)."""

    class FullUpsampling(nn.Module):
        """The same segmentor without the low-resolution option."""

        def __init__(self, seg):
            super().__init__()
            self.seg = seg
            self.img_size = seg.img_size
            self.data_preprocessor = seg.data_preprocessor
            self.test_cfg = seg.test_cfg

        def encode_image(self, x):
            return self.seg.encode_image(x)

        def decode_prompts(self, emb, coords, labels, chunk_size=256,
                       upsample=True):
            return self.seg.decode_prompts(emb, coords, labels, chunk_size)

    model = copy.deepcopy(tiny_model)
    # Random weights give logits in about [-0.06, 0.17]: a threshold high
    # in that range yields small masks of varied shapes.
    model.test_cfg.update(mask_threshold=0.12, nms_iou_thr=0.9)
    g = torch.Generator().manual_seed(0)
    img = torch.rand((3, 150, 130), generator=g) * 255
    prompts = InstanceData(
        points=torch.rand((40, 2), generator=g) * torch.tensor([129., 149.]),
        labels=torch.zeros(40, dtype=torch.long))
    res_a, map_a = model.segment_points(img, prompts)
    full = copy.deepcopy(model)
    full.segmentor = FullUpsampling(full.segmentor)
    res_b, map_b = full.segment_points(img, prompts)
    assert len(res_a) > 3
    assert torch.equal(map_a, map_b)
    assert torch.equal(res_a.scores, res_b.scores)
    assert torch.equal(res_a.masks, res_b.masks)


# ------------------------------------------------------------- oracle
def test_oracle_equals_end_to_end_with_gt_points(tiny_model):
    """Oracle and end-to-end share the engine: the segmentor's oracle
    predict equals the end-to-end path fed the GT points with
    decode_policy='oracle' (same tiles, negatives, stitching)."""
    from mmdet.structures.mask import BitmapMasks
    model = copy.deepcopy(tiny_model)
    model.test_cfg.update(decode_policy='oracle', nms_iou_thr=None,
                          mask_threshold=0.1)
    model.segmentor.test_cfg.update(mask_threshold=0.1)
    h, w = 150, 130
    g = torch.Generator().manual_seed(1)
    bgr = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    points = torch.rand((30, 2), generator=g) * torch.tensor(
        [w - 1., h - 1.])
    labels = torch.randint(0, 2, (30, ), generator=g)
    sample = DetDataSample(metainfo=dict(
        img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.)))
    sample.gt_instances = InstanceData(
        points=points, labels=labels,
        masks=BitmapMasks(np.zeros((30, h, w), np.uint8), h, w))
    seg = model.segmentor
    data = seg.data_preprocessor(
        dict(inputs=[bgr], data_samples=[sample]), False)
    with torch.no_grad():
        oracle = seg.predict(data['inputs'], data['data_samples'])[0]
    rgb = model.data_preprocessor(
        dict(inputs=[bgr], data_samples=[copy.deepcopy(sample)]),
        False)['inputs'][0]
    e2e, inst_map = model.segment_points(
        rgb, InstanceData(points=points, labels=labels))
    ref = oracle.pred_instances
    assert len(ref) > 5
    assert torch.equal(oracle.pred_inst_map.sem_seg[0], inst_map)
    for key in ('masks', 'labels', 'scores', 'bboxes', 'points'):
        assert torch.equal(ref[key], e2e[key]), key
