"""Tile geometry and stitching helpers, on hand-computed cases."""
import pytest
import torch

from pns_mmdet.models.inference import (boxes_near_inner_edge, crop_masks,
                                           inner_tile_edges, make_tiles,
                                           masks_to_sam_boxes,
                                           most_central_tile, pad_to_size,
                                           paint_instances, points_in_tiles,
                                           sam_to_mmdet_boxes, tile_starts)


@pytest.mark.parametrize('length, expected', [
    (1000, [0, 192, 384, 576, 744]),  # Kumar (upstream crop_with_overlap)
    (500, [0, 192, 244]),  # CPM-17
    (600, [0, 192, 344]),
    (256, [0]),
    (100, [0]),  # smaller than a tile: one (padded) tile
    (257, [0, 1]),
])
def test_tile_starts_upstream_geometry(length, expected):
    assert tile_starts(length, 256, 192) == expected


def test_tile_starts_rejects_gaps():
    with pytest.raises(ValueError, match='stride'):
        tile_starts(1000, 256, 300)
    with pytest.raises(ValueError, match='>= 1'):
        tile_starts(0, 256, 192)


def test_make_tiles_raster_order_and_clipping():
    tiles = make_tiles((300, 100), 256, 192)
    # One column (100 < 256, clipped to the image), rows at 0 and 44.
    assert tiles.tolist() == [[0, 0, 100, 256], [0, 44, 100, 300]]
    tiles = make_tiles((500, 600), 256, 192)
    assert len(tiles) == 9
    assert tiles[:3, 0].tolist() == [0, 192, 344]  # x inner
    assert tiles[::3, 1].tolist() == [0, 192, 244]  # y outer


def test_points_in_tiles_half_open():
    tiles = torch.tensor([[0, 0, 256, 256], [192, 0, 448, 256]])
    pts = torch.tensor([[191.9, 5.], [192., 5.], [255.9, 5.], [256., 5.]])
    assert points_in_tiles(pts, tiles).tolist() == [[True, False],
                                                    [True, True],
                                                    [True, True],
                                                    [False, True]]


def test_inner_tile_edges():
    tiles = make_tiles((500, 500), 256, 192)
    inner = inner_tile_edges(tiles, (500, 500))
    assert inner[0].tolist() == [False, False, True, True]  # top-left
    assert inner[4].tolist() == [True, True, True, True]  # centre
    assert inner[8].tolist() == [True, True, False, False]  # bottom-right


def test_most_central_tile_partitions_overlap_at_midline():
    # Tiles [0, 256) and [192, 448) over a 448-wide image; the overlap
    # [192, 256) is split at its middle: pixel 223 is 32 px from tile 1's
    # inner edge (255) and 31 px from tile 2's (192), pixel 224 the reverse.
    tiles = make_tiles((100, 448), 256, 192)
    pts = torch.tensor([[100., 50.], [223., 50.], [224., 50.], [400., 50.]])
    assert most_central_tile(pts, tiles, (100, 448)).tolist() == [0, 0, 1, 1]


def test_most_central_tile_ignores_image_borders():
    # Near the image's left border, tile 0 is the only choice even though
    # the point is 0 px from that (outer) edge.
    tiles = make_tiles((300, 300), 256, 192)
    pts = torch.tensor([[0., 0.], [299., 299.]])
    assert most_central_tile(pts, tiles, (300, 300)).tolist() == [0, 3]


def test_most_central_tile_rejects_outside_points():
    tiles = make_tiles((100, 100), 256, 192)
    with pytest.raises(ValueError, match='outside every tile'):
        most_central_tile(torch.tensor([[150., 5.]]), tiles, (100, 100))


def test_masks_to_sam_boxes_inclusive_and_empty():
    masks = torch.zeros((2, 6, 8), dtype=torch.bool)
    masks[0, 1:4, 2:7] = True
    boxes = masks_to_sam_boxes(masks)
    assert boxes.tolist() == [[2, 1, 6, 3], [0, 0, 0, 0]]
    assert sam_to_mmdet_boxes(boxes)[0].tolist() == [2., 1., 7., 4.]


def test_boxes_near_inner_edge_upstream_semantics():
    # Tile [192, 448) x [0, 256) of a 1000 x 256 image: left/right edges are
    # inner, top/bottom are image borders.
    tile = (192, 0, 448, 256)
    boxes = torch.tensor([
        [199, 10, 220, 30],  # 7 px from the left inner edge: drop
        [200, 10, 220, 30],  # 8 px: keep
        [300, 0, 320, 20],  # touches the top image border: keep
        [420, 100, 441, 120],  # x2 = 441 within 7 of 448: drop
        [420, 100, 440, 120],  # x2 = 440, 8 px: keep
    ])
    assert boxes_near_inner_edge(boxes, tile, (256, 1000),
                                 7).tolist() == [True, False, False, True,
                                                 False]


def test_crop_and_paint_roundtrip_later_wins():
    masks = torch.zeros((2, 10, 10), dtype=torch.bool)
    masks[0, 2:6, 2:6] = True
    masks[1, 4:8, 4:9] = True
    boxes = masks_to_sam_boxes(masks)
    patches = crop_masks(masks, boxes)
    assert patches[0].shape == (4, 4) and patches[1].shape == (4, 5)
    inst = paint_instances(patches, boxes, (10, 10))
    assert inst.dtype == torch.int32
    assert int((inst == 1).sum()) == 16 - 4  # 2x2 overwritten by id 2
    assert int((inst == 2).sum()) == 20
    assert int(inst[4, 4]) == 2


def test_paint_rejects_inconsistent_patch():
    with pytest.raises(ValueError, match='patch 0'):
        paint_instances([torch.ones((3, 3), dtype=torch.bool)],
                        torch.tensor([[0, 0, 1, 1]]), (5, 5))


def test_pad_to_size():
    img = torch.ones((3, 2, 3))
    out = pad_to_size(img, (4, 5))
    assert out.shape == (3, 4, 5)
    assert out.sum() == 18 and out[:, 2:].abs().sum() == 0
    assert pad_to_size(img, (2, 3)) is img
    with pytest.raises(ValueError, match='larger'):
        pad_to_size(img, (1, 3))


@pytest.mark.parametrize('valid_hw', [(256, 256), (200, 170)])
def test_upsampled_mask_patches_equal_full_upsampling(valid_hw):
    import torch.nn.functional as F

    from pns_mmdet.models.inference import upsampled_mask_patches
    g = torch.Generator().manual_seed(0)
    n = 40
    low = torch.randn((n, 64, 64), generator=g) * 3 - 6
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing='ij')
    for i in range(n):
        # Blobs of several sizes, some touching or crossing the border.
        cx, cy = torch.randint(-3, 67, (2, ), generator=g).tolist()
        r = 1 + i % 8
        low[i] += 12 * torch.exp(-((xx - cx)**2 + (yy - cy)**2) / (2 * r * r))
    low[0] = -5.  # empty mask
    vh, vw = valid_hw
    full = F.interpolate(
        low[:, None], size=(256, 256), mode='bilinear',
        align_corners=False)[:, 0, :vh, :vw] > 0
    ref_boxes = masks_to_sam_boxes(full)
    ref_patches = crop_masks(full, ref_boxes)
    boxes, patches = upsampled_mask_patches(low, (256, 256), 0.0, valid_hw)
    assert torch.equal(boxes, ref_boxes)
    for i in range(n):
        if full[i].any():
            assert torch.equal(patches[i], ref_patches[i])
        else:
            assert patches[i].numel() == 0
    with pytest.raises(ValueError, match='integer multiple'):
        upsampled_mask_patches(low, (100, 100), 0.0)


def test_most_central_tile_is_the_max_min_distance_tile():
    """On a 2-D grid the axis-wise owner is the tile whose nearest inner
    edge is the farthest (ties to the lower index), checked against that
    definition computed by brute force."""
    tiles = make_tiles((700, 650), 256, 192)
    g = torch.Generator().manual_seed(0)
    pts = (torch.rand((2000, 2), generator=g) *
           torch.tensor([649., 699.])).round()
    owner = most_central_tile(pts, tiles, (700, 650))
    inner = inner_tile_edges(tiles, (700, 650))
    t = tiles.float()
    dist = torch.stack([
        pts[:, None, 0] - t[None, :, 0], pts[:, None, 1] - t[None, :, 1],
        t[None, :, 2] - 1 - pts[:, None, 0],
        t[None, :, 3] - 1 - pts[:, None, 1]
    ], -1)
    dist = torch.where(inner[None], dist, torch.full_like(dist, 1e9))
    inside = points_in_tiles(pts, tiles)
    centrality = torch.where(inside, dist.min(-1).values,
                             torch.full_like(dist[..., 0], -1e9))
    best = centrality.max(1).values
    assert torch.equal(centrality[torch.arange(len(pts)), owner], best)
    assert inside[torch.arange(len(pts)), owner].all()


def test_most_central_tile_accepts_points_in_the_last_pixel():
    # (299.5, 299.5) lies in pixel 299 of a 300 x 300 image: inside, as
    # points_in_tiles counts it (x < W).
    tiles = make_tiles((300, 300), 256, 192)
    pts = torch.tensor([[299.5, 299.5], [0., 299.9]])
    assert most_central_tile(pts, tiles, (300, 300)).tolist() == [3, 2]
    with pytest.raises(ValueError, match='outside every tile'):
        most_central_tile(torch.tensor([[300., 5.]]), tiles, (300, 300))
