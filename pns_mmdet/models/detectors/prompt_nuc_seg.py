"""PromptNucSeg end to end: prompter points -> SAM masks -> instance map."""
import inspect
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmcv.ops import nms
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample, OptSampleList, SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.logging import print_log
from mmengine.structures import InstanceData, PixelData
from torch import Tensor, nn

from ...engine.checkpoint import load_part_checkpoint, without_pretrained
from ..sam.padded_window_block import use_padded_window_blocks
from ..utils.autocast import autocast_context, check_autocast_dtype
from ..utils.point_ops import point_nms
from ..utils.prompts import build_point_prompts
from ..utils.tiling import (boxes_near_inner_edge, crop_masks, make_tiles,
                            masks_to_sam_boxes, most_central_tile,
                            pad_to_size, paint_instances, points_in_tiles,
                            sam_to_mmdet_boxes, upsampled_mask_patches)

__all__ = ['PromptNucSeg']


_DEFAULT_TEST_CFG = dict(
    # Prompter: whole image up to this side, else overlapping tiles.
    prompter_tile_size=1024,
    prompter_tile_overlap=64,
    prompter_batch=2,
    # None: the prompter's own test_cfg.nms_radius (cross-tile duplicates).
    point_nms_radius=None,
    # Segmentor tiles: side = segmentor.img_size, overlap epsilon.
    seg_tile_overlap=64,
    # K nearest predicted points (of the same tile) as negative prompts;
    # None: the segmentor's test_cfg (the K it was trained with).
    num_neg_prompts=None,
    # Upstream trick: decode with and without negatives, keep higher IoU.
    neg_prompts_both=False,
    # Prompts per decoder call; None: the segmentor's test_cfg.
    chunk_size=None,
    encode_batch=4,
    # Mask logit threshold; None: the segmentor's test_cfg.
    mask_threshold=None,
    # Drop masks whose box is this close (px) to an inner tile edge.
    edge_margin=7,
    # 'all': decode each prompt in every tile containing it (upstream);
    # 'central': only in its most central tile, and in the others only when
    # that mask touches an inner tile edge.
    decode_policy='all',
    nms_iou_thr=0.5,
    autocast_dtype=None,
    # Return pred_instances.masks (N, H, W); False keeps only the maps.
    with_masks=True,
    # Exact, cheaper windowed attention in SAM ViT encoders (see
    # PaddedWindowBlock).
    fast_window_attention=True)


@MODELS.register_module()
class PromptNucSeg(BaseDetector):
    """Prompt-driven nucleus instance segmentation at any image size.

    An inference composition of a trained :class:`NucleusPrompter` and a
    trained :class:`SAMPromptSegmentor` (each trained with its own config):

    1. **Points.** The prompter runs on the whole image (padded to a
       multiple of its stride λ), or on overlapping tiles when the image is
       larger than ``prompter_tile_size``: each tile keeps the points it
       owns (where it is the most central tile) and a point NMS removes
       duplicates across tile borders. Mask-aided filtering and the point
       NMS happen inside the prompter.
    2. **Masks.** The segmentor runs on tiles of ``img_size`` (256) with
       overlap ``seg_tile_overlap`` (64). Each tile's image embedding is
       computed once (tiles without prompts are skipped, several tiles per
       encoder call) and all its prompts are decoded in chunks; the K
       nearest predicted points in the tile are the negative prompts.
    3. **Stitching** (upstream PromptNucSeg): masks whose box lies within
       ``edge_margin`` px of an inner tile edge are dropped, the best
       (predicted IoU) mask per prompt is kept, class-agnostic box NMS with
       the predicted IoU as score removes duplicates, and masks are painted
       in ascending score order. Kept masks are stored as box crops, so
       memory grows with the nuclei, not with tiles x H x W.
    4. **Output** (docs/design.md): ``pred_instances`` with ``masks``
       (N, H, W) bool, ``labels`` (the prompter's classes), ``scores``
       (predicted IoU), ``bboxes`` (xyxy, exclusive maxima) and ``points``
       (the prompts), sorted by ascending score so that instance ``i`` has
       id ``i + 1`` in ``pred_inst_map`` (``PixelData(sem_seg=(1, H, W)
       int32)``); instances hidden entirely by higher-scored ones are
       dropped. ``pred_class_map`` holds ``label + 1`` per pixel.

    Args:
        prompter (dict): :class:`NucleusPrompter` config.
        segmentor (dict): :class:`SAMPromptSegmentor` config.
        prompter_checkpoint (str, optional): Trained prompter weights,
            loaded strictly (``map_location='cpu'``) at build; the prompter
            config's own pretrained references (``*checkpoint``,
            ``init_cfg``) are then ignored. None keeps the weights the
            prompter config gives (random in tests and benchmarks) and logs
            it.
        segmentor_checkpoint (str, optional): Trained segmentor weights,
            likewise (None keeps e.g. LiteMedSAM's packaged weights).
        test_cfg (dict, optional): See ``_DEFAULT_TEST_CFG`` in this module
            (tile sizes, K, NMS threshold, decode policy, autocast dtype).
        data_preprocessor (dict, optional): ``DetDataPreprocessor`` that
            only converts BGR to RGB (the default); each part normalises
            with its own preprocessor's mean/std (checked).
        init_cfg (dict, optional): Unused (weights come from checkpoints).
        train_cfg (dict, optional): Unused; see :meth:`loss`.
    """

    def __init__(self,
                 prompter: ConfigType,
                 segmentor: ConfigType,
                 prompter_checkpoint: Optional[str] = None,
                 segmentor_checkpoint: Optional[str] = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None,
                 train_cfg: OptConfigType = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(
                type='DetDataPreprocessor', bgr_to_rgb=True)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        # A trained part checkpoint supersedes the part config's pretrained
        # weights (SAM / ImageNet files), which need not exist then.
        if prompter_checkpoint is not None:
            prompter = without_pretrained(prompter)
        if segmentor_checkpoint is not None:
            segmentor = without_pretrained(segmentor)
        self.prompter = MODELS.build(prompter)
        self.segmentor = MODELS.build(segmentor)
        self._check_preprocessing()
        self.test_cfg = dict(_DEFAULT_TEST_CFG)
        unknown = set(test_cfg or {}) - set(_DEFAULT_TEST_CFG)
        if unknown:
            raise ValueError(f'PromptNucSeg: unknown test_cfg keys '
                             f'{sorted(unknown)}; valid keys are '
                             f'{sorted(_DEFAULT_TEST_CFG)}')
        self.test_cfg.update(test_cfg or {})
        seg_test_cfg = getattr(self.segmentor, 'test_cfg', None) or {}
        for key, default in (('num_neg_prompts', 0), ('chunk_size', 256),
                             ('mask_threshold', 0.0)):
            if self.test_cfg[key] is None:
                self.test_cfg[key] = seg_test_cfg.get(key, default)
        self._check_test_cfg()
        use_padded_window_blocks(self.segmentor,
                                 self.test_cfg['fast_window_attention'])
        self.prompter_checkpoint = prompter_checkpoint
        self.segmentor_checkpoint = segmentor_checkpoint
        # Loaded at build: Runner.test() never calls init_weights, and
        # tools/test.py needs no load_from for this model.
        for field, part, ckpt in (('prompter_checkpoint', 'prompter',
                                   prompter_checkpoint),
                                  ('segmentor_checkpoint', 'segmentor',
                                   segmentor_checkpoint)):
            if ckpt is None:
                print_log(
                    f'PromptNucSeg: {field} is None, the {part} keeps '
                    'random (or its config\'s pretrained) weights',
                    logger='current')
            else:
                load_part_checkpoint(getattr(self, part), ckpt, field,
                                     part + '.')
        self.eval()

    # ------------------------------------------------------------ checks
    def _check_preprocessing(self) -> None:
        """This model only converts BGR to RGB; each part then normalises
        with its own mean/std (the prompter uses ImageNet statistics,
        LiteMedSAM scales to [0, 1]), exactly as it was trained."""
        dp = self.data_preprocessor
        if getattr(dp, '_enable_normalize', False) or not getattr(
                dp, '_channel_conversion', False):
            raise ValueError(
                'PromptNucSeg: data_preprocessor must convert BGR to RGB '
                'and must not normalise (mean/std None): the prompter and '
                'the segmentor apply their own mean/std, e.g. '
                "dict(type='DetDataPreprocessor', bgr_to_rgb=True)")

    @staticmethod
    def part_input(img: Tensor, part: nn.Module) -> Tensor:
        """What ``part``'s own data preprocessor would give for this image.

        Args:
            img (Tensor): (3, h, w) float RGB in [0, 255] (this model's
                preprocessed input).
            part (nn.Module): The prompter or the segmentor.

        Returns:
            Tensor: (3, h, w) in the part's channel order, normalised with
            its mean/std (unchanged for parts without a preprocessor).
        """
        dp = getattr(part, 'data_preprocessor', None)
        if dp is None:
            return img
        if not getattr(dp, '_channel_conversion', True):
            img = img.flip(0)  # the part was trained on BGR
        if getattr(dp, '_enable_normalize', False):
            img = (img - dp.mean.to(img)) / dp.std.to(img)
        return img

    def _check_test_cfg(self) -> None:
        cfg = self.test_cfg
        size = self.segmentor.img_size
        if not 0 <= cfg['seg_tile_overlap'] < size:
            raise ValueError(f'test_cfg.seg_tile_overlap must be in [0, '
                             f'{size}), got {cfg["seg_tile_overlap"]}')
        if not 0 <= cfg['prompter_tile_overlap'] < cfg['prompter_tile_size']:
            raise ValueError('test_cfg.prompter_tile_overlap must be in [0, '
                             'prompter_tile_size)')
        if cfg['decode_policy'] not in ('all', 'central'):
            raise ValueError(f'test_cfg.decode_policy must be "all" or '
                             f'"central", got {cfg["decode_policy"]!r}')
        check_autocast_dtype(cfg['autocast_dtype'], 'test_cfg.autocast_dtype')
        for key in ('chunk_size', 'encode_batch', 'prompter_batch'):
            if int(cfg[key]) < 1:
                raise ValueError(f'test_cfg.{key} must be >= 1')
        if int(cfg['num_neg_prompts']) < 0:
            raise ValueError('test_cfg.num_neg_prompts must be >= 0')

    # ------------------------------------------------------ mmdet hooks
    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Not trainable end to end (the paper trains the parts apart)."""
        raise NotImplementedError(
            'PromptNucSeg is an inference composition and cannot be trained '
            'end to end. Train the prompter and the segmentor separately '
            '(e.g. tools/train.py configs/prompter_pannuke.py and tools/'
            'train.py configs/segmentor_sam-b_pannuke.py), then set '
            'prompter_checkpoint and segmentor_checkpoint in this config')

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor]:
        """Prompter neck features of (B, 3, H, W) preprocessed inputs."""
        return self.prompter.extract_feat(
            torch.stack([self.part_input(x, self.prompter)
                         for x in batch_inputs]))

    def _forward(self,
                 batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None) -> Tuple[Tensor]:
        """Instance maps (B, H, W) int32 of the batch (``tensor`` mode)."""
        samples = batch_data_samples or [
            DetDataSample(metainfo=dict(img_shape=batch_inputs.shape[-2:]))
            for _ in range(batch_inputs.size(0))
        ]
        maps = [
            self.predict_image(batch_inputs[i], s, with_masks=False)[1]
            for i, s in enumerate(samples)
        ]
        return (torch.stack(maps), )

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Predict nucleus instances.

        Args:
            batch_inputs (Tensor): (B, 3, H, W) float RGB inputs from the
                data preprocessor (any padding; each image is cut to its
                ``img_shape``).
            batch_data_samples (list[DetDataSample]): Samples with
                ``img_shape`` (and ``ori_shape``/``scale_factor`` when
                ``rescale``).
            rescale (bool): Return results in the ``ori_shape`` frame.

        Returns:
            list[DetDataSample]: With ``pred_instances``, ``pred_inst_map``
            and ``pred_class_map`` (see the class docstring).
        """
        for i, sample in enumerate(batch_data_samples):
            instances, inst_map = self.predict_image(
                batch_inputs[i], sample,
                with_masks=self.test_cfg['with_masks'])
            if rescale:
                instances, inst_map = self._rescale(instances, inst_map,
                                                    sample.metainfo)
            sample.pred_instances = instances
            sample.pred_inst_map = PixelData(sem_seg=inst_map[None])
            sample.pred_class_map = PixelData(
                sem_seg=self.class_map(inst_map, instances.labels)[None])
        return batch_data_samples

    # ------------------------------------------------------ public steps
    @torch.no_grad()
    def predict_image(self,
                      inputs: Tensor,
                      sample: Optional[DetDataSample] = None,
                      with_masks: bool = True
                      ) -> Tuple[InstanceData, Tensor]:
        """Segment the nuclei of one image.

        Args:
            inputs (Tensor): (3, H', W') float RGB in [0, 255], as this
                model's data preprocessor gives (may be padded).
            sample (DetDataSample, optional): Its ``img_shape`` (h, w) gives
                the valid region; the whole input otherwise.
            with_masks (bool): Also return ``masks`` (N, h, w) bool.

        Returns:
            tuple[InstanceData, Tensor]: instances (see the class docstring;
            ascending score, instance i has id i + 1) and the (h, w) int32
            instance map, in the ``img_shape`` frame.
        """
        h, w = (sample.metainfo['img_shape'][:2]
                if sample is not None and 'img_shape' in sample.metainfo else
                inputs.shape[-2:])
        img = inputs[:, :h, :w]
        with autocast_context(self.test_cfg['autocast_dtype'], img.device):
            prompts = self.predict_points(img)
            return self.segment_points(img, prompts, with_masks=with_masks)

    @torch.no_grad()
    def predict_points(self, img: Tensor) -> InstanceData:
        """Nucleus points of one image (step 1).

        Args:
            img (Tensor): (3, h, w) float RGB in [0, 255], unpadded.

        Returns:
            InstanceData: ``points`` (N, 2) float x, y in image pixels,
            ``labels`` (N,) long, ``scores`` (N,), descending score.
        """
        cfg = self.test_cfg
        img = self.part_input(img, self.prompter)
        h, w = img.shape[-2:]
        size = cfg['prompter_tile_size']
        if max(h, w) <= size:
            return self._prompter_on(img[None], [(0, 0)], (h, w))[0]
        tiles = make_tiles((h, w), size, size - cfg['prompter_tile_overlap'])
        boxes = tiles.tolist()
        points, labels, scores = [], [], []
        batch = int(cfg['prompter_batch'])
        for start in range(0, len(boxes), batch):
            group = boxes[start:start + batch]
            # Every tile has the same size (the image is larger than one).
            crops = torch.stack(
                [img[:, y1:y2, x1:x2] for x1, y1, x2, y2 in group])
            results = self._prompter_on(crops, [(x1, y1)
                                                for x1, y1, _, _ in group],
                                        (h, w))
            for t, res in enumerate(results, start):
                # Keep only the points this tile owns, so every location is
                # judged by the tile that sees it with the most context.
                own = most_central_tile(res.points,
                                        tiles.to(res.points.device),
                                        (h, w)) == t
                points.append(res.points[own])
                labels.append(res.labels[own])
                scores.append(res.scores[own])
        points = torch.cat(points)
        labels = torch.cat(labels)
        scores = torch.cat(scores).float()
        radius = cfg['point_nms_radius']
        if radius is None:
            radius = (self.prompter.test_cfg or {}).get('nms_radius', 12.0)
        # Two tiles may see one nucleus on either side of their ownership
        # border.
        keep = point_nms(points, scores, radius)
        return InstanceData(
            points=points[keep], labels=labels[keep], scores=scores[keep])

    def _prompter_on(self, tiles: Tensor, offsets: Sequence[Tuple[int, int]],
                     img_hw: Tuple[int, int]) -> List[InstanceData]:
        """Run the prompter on same-size tiles (B, 3, th, tw), returning
        points shifted by ``offsets`` into the image frame."""
        th, tw = tiles.shape[-2:]
        stride = self.prompter.stride
        pad_hw = (-(-th // stride) * stride, -(-tw // stride) * stride)
        batch = pad_to_size(tiles, pad_hw)
        samples = [
            DetDataSample(
                metainfo=dict(
                    img_shape=(th, tw),
                    ori_shape=(th, tw),
                    pad_shape=pad_hw,
                    batch_input_shape=pad_hw,
                    scale_factor=(1.0, 1.0))) for _ in offsets
        ]
        out = self.prompter.predict(batch, samples, rescale=False)
        results = []
        for sample, (x0, y0) in zip(out, offsets):
            pred = sample.pred_instances
            points = pred.points.float() + pred.points.new_tensor(
                [x0, y0], dtype=torch.float32)
            results.append(
                InstanceData(
                    points=points,
                    labels=pred.labels.long(),
                    scores=pred.scores.float()))
        return results

    @torch.no_grad()
    def segment_points(self,
                       img: Tensor,
                       prompts: InstanceData,
                       with_masks: bool = True
                       ) -> Tuple[InstanceData, Tensor]:
        """Masks for given point prompts over a whole image (steps 2-4).

        Args:
            img (Tensor): (3, h, w) float RGB in [0, 255], unpadded.
            prompts (InstanceData): ``points`` (N, 2) x, y image pixels,
                ``labels`` (N,).
            with_masks (bool): Also return ``masks`` (M, h, w) bool.

        Returns:
            tuple[InstanceData, Tensor]: See :meth:`predict_image`.
        """
        img = self.part_input(img, self.segmentor)
        h, w = img.shape[-2:]
        device = img.device
        points = prompts.points.float().to(device)
        labels = prompts.labels.long().to(device)
        cands = self._decode_all(img, points)
        pid, score, boxes, patches = cands
        if len(pid):
            # First-aspect NMS: the best-scored mask of each prompt (stable:
            # the first tile wins ties, like upstream's argmax).
            order = np.lexsort((-score.numpy(), pid.numpy()))
            first = np.ones(len(order), dtype=bool)
            first[1:] = pid.numpy()[order][1:] != pid.numpy()[order][:-1]
            best = torch.from_numpy(order[first])
            pid, score, boxes = pid[best], score[best], boxes[best]
            patches = [patches[i] for i in best.tolist()]
            # Second-aspect NMS: class-agnostic box NMS, score = predicted
            # IoU, on inclusive-max boxes as upstream (torchvision layout).
            _, keep = nms(boxes.float(), score.float(),
                          float(self.test_cfg['nms_iou_thr']))
            keep = keep.flip(0)  # ascending score: best painted last
            pid, score, boxes = pid[keep], score[keep], boxes[keep]
            patches = [patches[i] for i in keep.tolist()]
        inst_map = paint_instances(patches, boxes, (h, w), device=device)
        # Drop instances that higher-scored ones cover entirely, so map ids
        # and instances correspond one to one.
        visible = torch.bincount(
            inst_map.flatten().long(), minlength=len(pid) + 1)[1:] > 0
        if len(pid) and not bool(visible.all()):
            idx = torch.nonzero(visible.cpu()).flatten()
            lut = torch.zeros(len(pid) + 1, dtype=torch.int32, device=device)
            lut[idx.to(device) + 1] = torch.arange(
                1, len(idx) + 1, dtype=torch.int32, device=device)
            inst_map = lut[inst_map.long()]
            pid, score, boxes = pid[idx], score[idx], boxes[idx]
            patches = [patches[i] for i in idx.tolist()]
        result = InstanceData()
        pid_dev = pid.to(device)
        if with_masks:
            masks = torch.zeros((len(pid), h, w), dtype=torch.bool,
                                device=device)
            for i, (patch, (x1, y1, x2, y2)) in enumerate(
                    zip(patches, boxes.tolist())):
                masks[i, y1:y2 + 1, x1:x2 + 1] = patch.to(device)
            result.masks = masks
        result.labels = labels[pid_dev]
        result.scores = score.float().to(device)
        result.bboxes = sam_to_mmdet_boxes(boxes).to(device)
        result.points = points[pid_dev]
        return result, inst_map

    # ----------------------------------------------------------- decoding
    def _decode_all(self, img: Tensor,
                    points: Tensor) -> Tuple[Tensor, Tensor, Tensor, list]:
        """Decode the prompts over the tiles; return the masks that survive
        the edge test as (prompt ids (M,), scores (M,), SAM boxes (M, 4) in
        image pixels, M box-sized bool patches)."""
        cfg = self.test_cfg
        h, w = img.shape[-2:]
        size = self.segmentor.img_size
        tiles = make_tiles((h, w), size, size - cfg['seg_tile_overlap'],
                           device=points.device)
        cands: List[tuple] = []
        if len(points) == 0:
            return self._cat_candidates(cands)
        inside = points_in_tiles(points, tiles)  # (N, T)
        if cfg['decode_policy'] == 'all':
            self._decode_tiles(img, tiles, points, inside, inside, {}, cands,
                               keep_cache=False)
            return self._cat_candidates(cands)
        self._decode_central(img, tiles, points, inside, cands)
        return self._cat_candidates(cands)

    def _decode_central(self, img: Tensor, tiles: Tensor, points: Tensor,
                        inside: Tensor, cands: List[tuple]) -> None:
        """'central' policy: each prompt in its most central tile first;
        in its other tiles only when that mask was dropped (inner edge) or
        empty. Tile rows are processed in order and an embedding is freed
        as soon as no unresolved prompt can need it, so memory stays at a
        few tile rows whatever the image size."""
        h, w = img.shape[-2:]
        num, device = len(points), points.device
        central = most_central_tile(points, tiles, (h, w))
        nx = int((tiles[:, 1] == tiles[0, 1]).sum())
        row = torch.arange(len(tiles), device=device) // nx
        big = len(tiles)
        rows_in = torch.where(inside, row[None], torch.full_like(
            inside, -1, dtype=row.dtype))
        last_row = rows_in.max(dim=1).values
        first_row = torch.where(inside, row[None],
                                torch.full_like(rows_in, big)
                                ).min(dim=1).values
        central_row = row[central]
        found = torch.zeros(num, dtype=torch.bool, device=device)
        settled = torch.zeros(num, dtype=torch.bool, device=device)
        cache: Dict[int, Tensor] = {}
        arange = torch.arange(num, device=device)
        for r in range(int(row.max()) + 1):
            todo = torch.zeros_like(inside)
            sel = central_row == r
            todo[arange[sel], central[sel]] = True
            self._decode_tiles(img, tiles, points, inside, todo, cache,
                               cands, found=found)
            # Every tile of these prompts has been seen by now.
            ready = (last_row <= r) & ~settled
            retry = ready & ~found
            if bool(retry.any()):
                todo = inside & retry[:, None]
                todo[arange[retry], central[retry]] = False
                self._decode_tiles(img, tiles, points, inside, todo, cache,
                                   cands, found=found)
            settled |= ready
            keep_from = int(first_row[~settled].min()) if bool(
                (~settled).any()) else big
            for t in [t for t in cache if int(row[t]) < keep_from]:
                del cache[t]

    def _decode_tiles(self,
                      img: Tensor,
                      tiles: Tensor,
                      points: Tensor,
                      inside: Tensor,
                      todo: Tensor,
                      cache: Dict[int, Tensor],
                      cands: List[tuple],
                      keep_cache: bool = True,
                      found: Optional[Tensor] = None) -> None:
        """Encode the tiles that have prompts to decode (``todo`` (N, T)),
        ``encode_batch`` at a time (reusing ``cache``), and decode their
        prompts; ``found`` (N,) marks prompts that got a kept mask."""
        cfg = self.test_cfg
        size = self.segmentor.img_size
        h, w = img.shape[-2:]
        active = torch.nonzero(todo.any(dim=0)).flatten().tolist()
        batch = max(1, int(cfg['encode_batch']))
        for start in range(0, len(active), batch):
            group = active[start:start + batch]
            missing = [t for t in group if t not in cache]
            if missing:
                crops = [
                    pad_to_size(img[:, y1:y2, x1:x2], (size, size))
                    for x1, y1, x2, y2 in tiles[missing].tolist()
                ]
                emb = self.segmentor.encode_image(torch.stack(crops))
                for t, e in zip(missing, emb):
                    cache[t] = e[None]
            for t in group:
                self._decode_tile(t, cache[t], tiles[t].tolist(), (h, w),
                                  points, inside[:, t], todo[:, t], cands,
                                  found)
                if not keep_cache:
                    del cache[t]

    def _decode_tile(self,
                     t: int,
                     embedding: Tensor,
                     tile: List[int],
                     img_hw: Tuple[int, int],
                     points: Tensor,
                     inside: Tensor,
                     todo: Tensor,
                     cands: List[tuple],
                     found: Optional[Tensor] = None) -> None:
        """Decode the ``todo`` prompts of one tile and keep the masks that
        do not touch an inner tile edge."""
        cfg = self.test_cfg
        x1, y1, x2, y2 = tile
        th, tw = y2 - y1, x2 - x1
        in_idx = torch.nonzero(inside).flatten()
        local = points[in_idx] - points.new_tensor([x1, y1])
        # Negatives: the K nearest predicted points of the same tile
        # (upstream), whichever of them are decoded here.
        coords, labels = build_point_prompts(
            local, int(cfg['num_neg_prompts']))
        rows = torch.nonzero(todo[in_idx]).flatten()
        coords, labels, pids = coords[rows], labels[rows], in_idx[rows]
        if cfg['neg_prompts_both'] and cfg['num_neg_prompts'] > 0:
            plain = labels.clone()
            plain[:, 1:] = -1
            coords = torch.cat([coords, coords])
            labels = torch.cat([labels, plain])
            pids = torch.cat([pids, pids])
        offset = torch.tensor([x1, y1, x1, y1])
        chunk = int(cfg['chunk_size'])
        size = self.segmentor.img_size
        thr = cfg['mask_threshold']
        for s in range(0, len(pids), chunk):
            # Low-resolution logits: each mask is upsampled to the tile
            # frame only around itself (same values as the full upsampling).
            logits, ious = self._decode_lowres(embedding, coords[s:s + chunk],
                                               labels[s:s + chunk], chunk)
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
            keep = nonempty & ~boxes_near_inner_edge(
                boxes_img, tile, img_hw, cfg['edge_margin'])
            if not bool(keep.any()):
                continue
            idx = torch.nonzero(keep).flatten()
            if patches is None:
                patches = crop_masks(masks[idx.to(masks.device)], boxes[idx])
            else:
                patches = [patches[i] for i in idx.tolist()]
            kept = pids[s:s + chunk].cpu()[idx]
            cands.append((kept, ious.float().cpu()[idx], boxes_img[idx],
                          patches))
            if found is not None:
                found[kept.to(found.device)] = True

    def _decode_lowres(self, embedding: Tensor, coords: Tensor,
                       labels: Tensor, chunk: int) -> Tuple[Tensor, Tensor]:
        """Decoder logits on its own grid when the segmentor offers it
        (``upsample=False``), else at the tile size."""
        kwargs = dict(chunk_size=chunk)
        if 'upsample' in inspect.signature(
                self.segmentor.decode_prompts).parameters:
            kwargs['upsample'] = False
        return self.segmentor.decode_prompts(embedding, coords, labels,
                                             **kwargs)

    @staticmethod
    def _cat_candidates(
            cands: List[tuple]) -> Tuple[Tensor, Tensor, Tensor, list]:
        if not cands:
            return (torch.zeros(0, dtype=torch.long), torch.zeros(0),
                    torch.zeros((0, 4), dtype=torch.long), [])
        patches = [p for c in cands for p in c[3]]
        return (torch.cat([c[0] for c in cands]),
                torch.cat([c[1] for c in cands]),
                torch.cat([c[2] for c in cands]), patches)

    # ------------------------------------------------------------ outputs
    @staticmethod
    def class_map(inst_map: Tensor, labels: Tensor) -> Tensor:
        """(H, W) uint8 class map: ``label + 1`` on instance pixels."""
        lut = torch.zeros(len(labels) + 1, dtype=torch.uint8,
                          device=inst_map.device)
        lut[1:] = labels.to(inst_map.device).to(torch.uint8) + 1
        return lut[inst_map.long()]

    @staticmethod
    def _rescale(instances: InstanceData, inst_map: Tensor,
                 meta: dict) -> Tuple[InstanceData, Tensor]:
        """Map results from ``img_shape`` to ``ori_shape`` (nearest)."""
        ori_h, ori_w = meta.get('ori_shape', inst_map.shape)[:2]
        h, w = inst_map.shape
        if (ori_h, ori_w) == (h, w):
            return instances, inst_map
        sx, sy = ori_w / w, ori_h / h
        inst_map = F.interpolate(
            inst_map[None, None].float(), size=(ori_h, ori_w),
            mode='nearest')[0, 0].to(torch.int32)
        out = InstanceData()
        if 'masks' in instances:
            out.masks = F.interpolate(
                instances.masks[:, None].float(),
                size=(ori_h, ori_w),
                mode='nearest')[:, 0].bool() if len(instances) else \
                instances.masks.new_zeros((0, ori_h, ori_w))
        out.labels = instances.labels
        out.scores = instances.scores
        scale = instances.bboxes.new_tensor([sx, sy, sx, sy])
        out.bboxes = instances.bboxes * scale
        out.points = (instances.points + 0.5) * instances.points.new_tensor(
            [sx, sy]) - 0.5
        return out, inst_map
