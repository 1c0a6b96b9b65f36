"""The engine's parts used on their own (no runner, no detector)."""
import pytest
import torch
from mmengine.structures import InstanceData
from torch import nn

from pns_mmdet.models.inference import (MaskCandidates, TiledDecoder,
                                        TiledPrompter, rescale_instances,
                                        stitch_instances)


class IdSegmentor(nn.Module):
    """Mask = the tile pixels sharing the prompt pixel's id (channel 0)."""

    def __init__(self, img_size=64, tile_overlap=16):
        super().__init__()
        self.img_size = img_size
        self.test_cfg = dict(tile_overlap=tile_overlap, num_neg_prompts=1)
        self.seen = []

    def encode_image(self, inputs):
        return inputs[:, :1].clone()

    def decode_prompts(self, emb, coords, labels, chunk_size=256,
                       upsample=True):
        self.seen.append(labels.clone())
        ids_img = emb[0, 0]
        pos = coords[:, 0].round().long()
        ids = ids_img[pos[:, 1], pos[:, 0]]
        masks = (ids_img[None] == ids[:, None, None]) & (ids[:, None, None]
                                                          > 0)
        return masks.float() * 20 - 10, 0.5 + ids / 1000.


def square_ids(h, w, boxes):
    ids = torch.zeros((h, w))
    for i, (x1, y1, x2, y2) in enumerate(boxes, 1):
        ids[y1:y2, x1:x2] = i
    img = torch.zeros((3, h, w))
    img[0] = ids
    return img, ids


def test_decoder_on_a_region_with_offset():
    """A region decoded with its offset gives the boxes of the whole-image
    run, shifted into the larger frame."""
    img, _ = square_ids(150, 140, [(20, 30, 30, 40), (90, 100, 104, 111)])
    points = torch.tensor([[24., 34.], [95., 105.]])
    seg = IdSegmentor()
    decoder = TiledDecoder.from_segmentor(seg, policy='central')
    whole = decoder(img, points)
    x0, y0 = 10, 20
    region = decoder(img[:, y0:, x0:], points, offset=(x0, y0))
    order_w = whole.prompt_ids.argsort()
    order_r = region.prompt_ids.argsort()
    assert torch.equal(whole.boxes[order_w], region.boxes[order_r])
    assert whole.boxes[order_w].tolist() == [[20, 30, 29, 39],
                                             [90, 100, 103, 110]]
    # K comes from the segmentor (one negative column).
    assert all(labels.shape[1] == 2 for labels in seg.seen)


def test_decoder_settings_checked_and_overrides_win():
    seg = IdSegmentor()
    with pytest.raises(ValueError, match='decode_policy must be one of'):
        TiledDecoder.from_segmentor(seg, policy='best')
    with pytest.raises(ValueError, match='tile_overlap must be in'):
        TiledDecoder(seg, tile_overlap=64, num_neg_prompts=0)
    decoder = TiledDecoder.from_segmentor(seg, num_neg_prompts=3,
                                          chunk_size=5)
    assert (decoder.num_neg_prompts, decoder.chunk_size,
            decoder.tile_overlap) == (3, 5, 16)


def test_stitching_keeps_best_mask_per_prompt_and_paints_by_score():
    patch = torch.ones((2, 2), dtype=torch.bool)
    cands = MaskCandidates(
        prompt_ids=torch.tensor([0, 0, 1]),
        scores=torch.tensor([0.3, 0.9, 0.5]),
        boxes=torch.tensor([[0, 0, 1, 1], [4, 4, 5, 5], [5, 5, 6, 6]]),
        patches=[patch, patch, patch])
    points = torch.tensor([[4., 4.], [6., 6.]])
    inst, inst_map = stitch_instances(cands, points, torch.tensor([1, 2]),
                                      (8, 8), nms_iou_thr=None)
    # Prompt 0 keeps its 0.9 mask; ascending score: prompt 1 first.
    assert inst.scores.tolist() == pytest.approx([0.5, 0.9])
    assert inst.labels.tolist() == [2, 1]
    assert inst.bboxes.tolist() == [[5., 5., 7., 7.], [4., 4., 6., 6.]]
    assert int(inst_map[5, 5]) == 2  # the higher score wins the overlap
    assert int(inst_map[6, 6]) == 1 and int(inst_map[0, 0]) == 0


def test_rescale_convention():
    inst = InstanceData(
        masks=torch.tensor([[[True, False], [False, False]]]),
        labels=torch.tensor([0]), scores=torch.tensor([1.]),
        bboxes=torch.tensor([[0., 0., 1., 1.]]),
        points=torch.tensor([[0., 0.]]))
    inst_map = inst.masks[0].int()
    out, big = rescale_instances(inst, inst_map, (4, 4))
    assert big.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0],
                            [0, 0, 0, 0]]
    assert torch.equal(out.masks[0], big.bool())
    assert out.points.tolist() == [[0.5, 0.5]]  # centre of the 2x2 block
    assert out.bboxes.tolist() == [[0., 0., 2., 2.]]


class GridPrompter(nn.Module):
    """One point at the centre of every 20 x 20 cell of the tile."""

    stride = 4
    test_cfg = dict(nms_radius=3.0)

    def predict(self, batch, samples, rescale=False):
        for sample in samples:
            th, tw = sample.metainfo['img_shape']
            ys, xs = torch.meshgrid(torch.arange(10., th, 20),
                                    torch.arange(10., tw, 20),
                                    indexing='ij')
            pts = torch.stack([xs.flatten(), ys.flatten()], 1)
            sample.pred_instances = InstanceData(
                points=pts, labels=torch.zeros(len(pts), dtype=torch.long),
                scores=torch.ones(len(pts)))
        return samples


def test_prompter_tiles_and_offset():
    img = torch.zeros((3, 100, 120))
    whole = TiledPrompter(GridPrompter(), tile_size=128)(img)
    tiled = TiledPrompter(GridPrompter(), tile_size=60, tile_overlap=20)(img)
    assert len(whole) == 30
    key = sorted(map(tuple, whole.points.tolist()))
    assert sorted(map(tuple, tiled.points.tolist())) == key
    shifted = TiledPrompter(GridPrompter(), tile_size=128)(img, (7, 3))
    assert torch.equal(shifted.points, whole.points + torch.tensor([7., 3.]))
    with pytest.raises(ValueError, match='tile_overlap must be in'):
        TiledPrompter(GridPrompter(), tile_size=60, tile_overlap=60)
