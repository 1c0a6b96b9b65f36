"""The segmentor over overlapping tiles: encode once, decode every prompt."""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..utils.prompts import build_point_prompts, resolve_num_neg_prompts
from .mask_patches import (crop_masks, masks_to_sam_boxes,
                           upsampled_mask_patches)
from .tiling import (boxes_near_inner_edge, make_tiles, most_central_tile,
                     pad_to_size, points_in_tiles)

__all__ = ['MaskCandidates', 'TiledDecoder', 'DECODE_POLICIES']

#: 'all': every prompt in every tile containing it (upstream), masks near
#: an inner tile edge dropped. 'central': in its most central tile, and in
#: the others only when that mask was dropped or empty. 'oracle': in its
#: most central tile only, no edge test (the paper's oracle, Table 7).
DECODE_POLICIES = ('all', 'central', 'oracle')


@dataclass
class MaskCandidates:
    """Masks kept by the tiled decoder (several per prompt possible).

    Attributes:
        prompt_ids (Tensor): (M,) long index of the prompt of each mask.
        scores (Tensor): (M,) float32 predicted IoU.
        boxes (Tensor): (M, 4) long SAM boxes (inclusive maxima) in the
            image frame.
        patches (list[Tensor]): M bool patches, patch i of the size of
            ``boxes[i]``.
    """
    prompt_ids: Tensor = field(
        default_factory=lambda: torch.zeros(0, dtype=torch.long))
    scores: Tensor = field(default_factory=lambda: torch.zeros(0))
    boxes: Tensor = field(
        default_factory=lambda: torch.zeros((0, 4), dtype=torch.long))
    patches: List[Tensor] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def select(self, idx: Tensor) -> 'MaskCandidates':
        """The candidates at the (K,) long indices ``idx``, in that order."""
        return MaskCandidates(self.prompt_ids[idx], self.scores[idx],
                              self.boxes[idx],
                              [self.patches[i] for i in idx.tolist()])

    @staticmethod
    def cat(parts: List['MaskCandidates']) -> 'MaskCandidates':
        if not parts:
            return MaskCandidates()
        return MaskCandidates(
            torch.cat([p.prompt_ids for p in parts]),
            torch.cat([p.scores for p in parts]),
            torch.cat([p.boxes for p in parts]),
            [patch for p in parts for patch in p.patches])


@dataclass
class _Run:
    """State of one image's decoding (tiles, prompts, cached embeddings)."""
    img: Tensor
    tiles: Tensor
    points: Tensor
    inside: Tensor
    cache: Dict[int, Tensor] = field(default_factory=dict)
    found: Optional[Tensor] = None
    parts: List[MaskCandidates] = field(default_factory=list)

    @property
    def img_hw(self) -> Tuple[int, int]:
        return tuple(self.img.shape[-2:])


class TiledDecoder:
    """Masks for point prompts over an image of any size.

    The image is covered by ``segmentor.img_size`` tiles overlapping by
    ``tile_overlap``. A tile's embedding is computed once (only tiles with
    prompts to decode, ``encode_batch`` per encoder call) and its prompts
    are decoded in chunks of ``chunk_size``, each with the ``K`` nearest
    prompts of the same tile as negatives (upstream). Masks that lie within
    ``edge_margin`` px of an inner tile edge are dropped (except under the
    'oracle' policy, which decodes each prompt once). The result holds
    every kept mask; :func:`~.stitching.stitch_instances` picks one per
    prompt and paints them.

    Args:
        segmentor (nn.Module): A :class:`SAMPromptSegmentor` (``img_size``,
            ``encode_image``, ``decode_prompts(..., upsample=False)``).
        tile_overlap (int): Overlap of neighbouring tiles, pixels.
        num_neg_prompts (int): K negatives per prompt.
        chunk_size (int): Prompts per decoder call.
        mask_threshold (float): Mask logit threshold.
        policy (str): One of :data:`DECODE_POLICIES`.
        encode_batch (int): Tiles per encoder call.
        edge_margin (float): Inner-edge tolerance of the edge test, pixels.
        neg_prompts_both (bool): Decode each prompt with and without its
            negatives (upstream trick; stitching keeps the better one).
    """

    def __init__(self,
                 segmentor: nn.Module,
                 tile_overlap: int,
                 num_neg_prompts: int,
                 chunk_size: int = 256,
                 mask_threshold: float = 0.0,
                 policy: str = 'all',
                 encode_batch: int = 4,
                 edge_margin: float = 7,
                 neg_prompts_both: bool = False) -> None:
        size = segmentor.img_size
        if not 0 <= tile_overlap < size:
            raise ValueError(f'segmentor tile_overlap must be in [0, '
                             f'img_size={size}), got {tile_overlap}')
        if policy not in DECODE_POLICIES:
            raise ValueError(f'decode_policy must be one of '
                             f'{DECODE_POLICIES}, got {policy!r}')
        for name, value in (('chunk_size', chunk_size),
                            ('encode_batch', encode_batch)):
            if int(value) < 1:
                raise ValueError(f'{name} must be >= 1, got {value}')
        if int(num_neg_prompts) < 0:
            raise ValueError(f'num_neg_prompts must be >= 0, got '
                             f'{num_neg_prompts}')
        self.segmentor = segmentor
        self.tile_size = size
        self.tile_overlap = int(tile_overlap)
        self.num_neg_prompts = int(num_neg_prompts)
        self.chunk_size = int(chunk_size)
        self.mask_threshold = float(mask_threshold)
        self.policy = policy
        self.encode_batch = int(encode_batch)
        self.edge_margin = float(edge_margin)
        self.neg_prompts_both = bool(neg_prompts_both)

    @classmethod
    def from_segmentor(cls,
                       segmentor: nn.Module,
                       num_neg_prompts: Optional[int] = None,
                       chunk_size: Optional[int] = None,
                       mask_threshold: Optional[float] = None,
                       where: str = 'test_cfg',
                       **kwargs) -> 'TiledDecoder':
        """A decoder with the segmentor's own test settings.

        ``tile_overlap``, K, ``chunk_size`` and ``mask_threshold`` come from
        ``segmentor.test_cfg`` (their one owner); K, chunk size and
        threshold may be overridden (None keeps the segmentor's; a
        different K is logged, see :func:`resolve_num_neg_prompts`).
        ``kwargs`` are the other arguments of :class:`TiledDecoder`.
        """
        cfg = getattr(segmentor, 'test_cfg', None) or {}
        size = segmentor.img_size
        return cls(
            segmentor,
            tile_overlap=cfg.get('tile_overlap', size // 4),
            num_neg_prompts=resolve_num_neg_prompts(
                cfg.get('num_neg_prompts', 0), num_neg_prompts, where),
            chunk_size=cfg.get('chunk_size', 256)
            if chunk_size is None else chunk_size,
            mask_threshold=cfg.get('mask_threshold', 0.0)
            if mask_threshold is None else mask_threshold,
            **kwargs)

    @torch.no_grad()
    def __call__(self,
                 img: Tensor,
                 points: Tensor,
                 offset: Tuple[int, int] = (0, 0)) -> MaskCandidates:
        """Decode ``points`` over the tiles of ``img``.

        Args:
            img (Tensor): (3, h, w) float, normalised for the segmentor,
                unpadded.
            points (Tensor): (N, 2) x, y prompts in the frame where ``img``
                starts at ``offset``, inside the image.
            offset (tuple[int, int]): (x0, y0) of ``img`` in the frame of
                ``points`` and of the returned boxes.

        Returns:
            MaskCandidates: Kept masks; boxes in the frame of ``points``.
        """
        size = self.tile_size
        points = points.float().to(img.device)
        if offset != (0, 0):
            points = points - points.new_tensor([offset[0], offset[1]])
        tiles = make_tiles(img.shape[-2:], size, size - self.tile_overlap,
                           device=points.device)
        if len(points) == 0:
            return MaskCandidates()
        run = _Run(img, tiles, points, points_in_tiles(points, tiles))
        if self.policy == 'all':
            self._decode_tiles(run, run.inside, keep_cache=False)
        elif self.policy == 'oracle':
            todo = torch.zeros_like(run.inside)
            owner = most_central_tile(points, tiles, run.img_hw)
            todo[torch.arange(len(points), device=owner.device), owner] = True
            self._decode_tiles(run, todo, keep_cache=False)
        else:
            self._decode_central(run)
        out = MaskCandidates.cat(run.parts)
        if offset != (0, 0):
            out.boxes = out.boxes + torch.tensor(
                [offset[0], offset[1], offset[0], offset[1]])
        return out

    def _decode_central(self, run: _Run) -> None:
        """'central' policy: each prompt in its most central tile first;
        in its other tiles only when that mask was dropped (inner edge) or
        empty. Tile rows are processed in order and an embedding is freed
        as soon as no unresolved prompt can need it, so memory stays at a
        few tile rows whatever the image size."""
        tiles, inside = run.tiles, run.inside
        num, device = len(run.points), run.points.device
        central = most_central_tile(run.points, tiles, run.img_hw)
        nx = int((tiles[:, 1] == tiles[0, 1]).sum())
        row = torch.arange(len(tiles), device=device) // nx
        big = len(tiles)
        last_row = torch.where(inside, row[None],
                               torch.full_like(inside, -1, dtype=row.dtype)
                               ).max(dim=1).values
        first_row = torch.where(inside, row[None],
                                torch.full_like(inside, big, dtype=row.dtype)
                                ).min(dim=1).values
        central_row = row[central]
        run.found = torch.zeros(num, dtype=torch.bool, device=device)
        settled = torch.zeros(num, dtype=torch.bool, device=device)
        arange = torch.arange(num, device=device)
        for r in range(int(row.max()) + 1):
            todo = torch.zeros_like(inside)
            sel = central_row == r
            todo[arange[sel], central[sel]] = True
            self._decode_tiles(run, todo)
            # Every tile of these prompts has been seen by now.
            ready = (last_row <= r) & ~settled
            retry = ready & ~run.found
            if bool(retry.any()):
                todo = inside & retry[:, None]
                todo[arange[retry], central[retry]] = False
                self._decode_tiles(run, todo)
            settled |= ready
            keep_from = int(first_row[~settled].min()) if bool(
                (~settled).any()) else big
            for t in [t for t in run.cache if int(row[t]) < keep_from]:
                del run.cache[t]

    def _decode_tiles(self, run: _Run, todo: Tensor,
                      keep_cache: bool = True) -> None:
        """Encode the tiles with prompts to decode (``todo`` (N, T) bool),
        ``encode_batch`` at a time (reusing ``run.cache``), and decode
        their prompts."""
        size = self.tile_size
        active = torch.nonzero(todo.any(dim=0)).flatten().tolist()
        for start in range(0, len(active), self.encode_batch):
            group = active[start:start + self.encode_batch]
            missing = [t for t in group if t not in run.cache]
            if missing:
                crops = [
                    pad_to_size(run.img[:, y1:y2, x1:x2], (size, size))
                    for x1, y1, x2, y2 in run.tiles[missing].tolist()
                ]
                emb = self.segmentor.encode_image(torch.stack(crops))
                for t, e in zip(missing, emb):
                    run.cache[t] = e[None]
            for t in group:
                self._decode_tile(run, t, todo[:, t])
                if not keep_cache:
                    del run.cache[t]

    def _decode_tile(self, run: _Run, t: int, todo: Tensor) -> None:
        """Decode the ``todo`` (N,) prompts of tile ``t``; keep the masks
        that pass the edge test."""
        tile = run.tiles[t].tolist()
        x1, y1, x2, y2 = tile
        th, tw = y2 - y1, x2 - x1
        in_idx = torch.nonzero(run.inside[:, t]).flatten()
        local = run.points[in_idx] - run.points.new_tensor([x1, y1])
        # Negatives: the K nearest prompts of the same tile (upstream),
        # whichever of them are decoded here.
        coords, labels = build_point_prompts(local, self.num_neg_prompts)
        rows = torch.nonzero(todo[in_idx]).flatten()
        coords, labels, pids = coords[rows], labels[rows], in_idx[rows]
        if self.neg_prompts_both and self.num_neg_prompts > 0:
            plain = labels.clone()
            plain[:, 1:] = -1
            coords = torch.cat([coords, coords])
            labels = torch.cat([labels, plain])
            pids = torch.cat([pids, pids])
        offset = torch.tensor([x1, y1, x1, y1])
        size, thr, chunk = self.tile_size, self.mask_threshold, self.chunk_size
        for s in range(0, len(pids), chunk):
            # Low-resolution logits: each mask is upsampled to the tile
            # frame only around itself (same values as the full upsampling).
            logits, ious = self.segmentor.decode_prompts(
                run.cache[t], coords[s:s + chunk], labels[s:s + chunk],
                chunk_size=chunk, upsample=False)
            if tuple(logits.shape[-2:]) == (size, size):
                masks = logits[:, :th, :tw] > thr
                boxes = masks_to_sam_boxes(masks).cpu()
                nonempty = masks.flatten(1).any(dim=1).cpu()
                patches = None
            else:
                boxes, patches = upsampled_mask_patches(
                    logits, (size, size), thr, valid_hw=(th, tw))
                nonempty = torch.tensor([p.numel() > 0 for p in patches],
                                        dtype=torch.bool)
            boxes_img = boxes + offset
            keep = nonempty
            if self.policy != 'oracle':
                keep = keep & ~boxes_near_inner_edge(
                    boxes_img, tile, run.img_hw, self.edge_margin)
            if not bool(keep.any()):
                continue
            idx = torch.nonzero(keep).flatten()
            if patches is None:
                patches = crop_masks(masks[idx.to(masks.device)], boxes[idx])
            else:
                patches = [patches[i] for i in idx.tolist()]
            kept = pids[s:s + chunk].cpu()[idx]
            run.parts.append(
                MaskCandidates(kept, ious.float().cpu()[idx],
                               boxes_img[idx], patches))
            if run.found is not None:
                run.found[kept.to(run.found.device)] = True
