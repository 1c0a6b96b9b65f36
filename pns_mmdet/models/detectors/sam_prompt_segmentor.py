"""SAM fine-tuned to segment one nucleus per point prompt (PromptNucSeg)."""
import hashlib
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample, OptSampleList, SampleList
from mmdet.structures.mask import mask2bbox
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.structures import InstanceData
from torch import Tensor

from ..sam.checkpoint import load_sam_checkpoint
from ..utils.autocast import autocast_context, check_autocast_dtype
from ..utils.prompts import build_point_prompts, sample_interior_points

__all__ = ['SAMPromptSegmentor']


@MODELS.register_module()
class SAMPromptSegmentor(BaseDetector):
    """Segment Anything prompted with nucleus points (PromptNucSeg segmentor).

    The image encoder, prompt encoder and mask decoder are
    ``segment_anything`` modules given by config (SAM ViT-B/L/H or
    LiteMedSAM's TinyViT). The image encoder runs once per image; all the
    image's prompts go through the mask decoder in one batch (in chunks at
    inference). Each prompt is a positive point inside the target nucleus
    plus the points of its K nearest other nuclei as negatives (paper Eq. 7)
    and yields one mask and one predicted IoU.

    Training (paper Eq. 2, 7): per image, Z nuclei are drawn at random; the
    positive point is drawn uniformly inside each one's mask, and the
    negatives are the (equally drawn) points of the K nearest other nuclei.
    Loss: ``loss_focal`` + ``loss_dice`` (per-mask mean) + MSE between the
    predicted IoU and the IoU of the thresholded mask (target detached).

    Inference (``predict``, the "oracle" mode of the paper's Table 7): the
    ground-truth points ``gt_instances.points`` are the prompts. Inputs
    larger than ``img_size`` (Kumar, CPM-17) are covered by overlapping
    ``img_size`` tiles; each prompt is decoded in the tile where it lies
    farthest from an inner tile edge. The end-to-end model instead calls
    :meth:`encode_image` and :meth:`decode_prompts` with prompter points.

    Args:
        image_encoder (dict): Config of the image encoder
            (``SAMImageEncoderViT`` or ``LiteMedSAMImageEncoder``).
        prompt_encoder (dict): Config of ``SAMPromptEncoder``; its
            ``image_embedding_size`` and ``input_image_size`` must match the
            image encoder (checked).
        mask_decoder (dict): Config of ``SAMMaskDecoder``.
        img_size (int): Side of the square model input, pixels. Defaults to
            256.
        checkpoint (str, optional): SAM-layout checkpoint loaded strictly at
            build (path, or ``package://...``; see
            :func:`pns_mmdet.models.sam.load_sam_checkpoint`). None keeps
            random weights.
        loss_focal (dict): Focal loss on mask logits, applied to (M, S*S).
            Default: ω = 20 times an α-free focal loss, written as mmdet's
            ``FocalLoss`` with α = 0.5 (which halves it) and weight 40.
        loss_dice (dict): Dice loss on mask logits, mean over masks.
        loss_iou (dict): Loss between predicted and actual IoU.
        train_cfg (dict, optional): ``num_prompts_per_img`` (Z, default 20),
            ``num_neg_prompts`` (K, default 1), ``mask_threshold`` (logit,
            default 0.0), ``embedding_cache_size`` (default 0 = off): with a
            frozen image encoder, keep up to this many image embeddings
            (LRU, keyed by a hash of the exact input tensor, so augmented
            variants are separate entries and never stale) so repeated
            epochs only train the decoder; ``autocast_dtype`` (default None;
            'bfloat16' runs the forward passes under CPU/GPU autocast, the
            losses stay in float32: about 1.7x faster decoder training on a
            CPU with AVX-512 BF16; 'auto' uses bfloat16 only where the
            hardware runs it natively, see ``models/utils/autocast.py``).
        test_cfg (dict, optional): ``num_neg_prompts`` (default 1),
            ``chunk_size`` (prompts per decoder batch, default 256),
            ``mask_threshold`` (default 0.0), ``tile_overlap`` (pixels,
            default img_size / 4, i.e. upstream's 64 at 256 px),
            ``autocast_dtype`` (None, 'bfloat16', 'float16' or 'auto';
            default None = float32).
        data_preprocessor (dict, optional): ``DetDataPreprocessor`` config;
            it should pad to multiples of ``img_size``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 image_encoder: ConfigType,
                 prompt_encoder: ConfigType,
                 mask_decoder: ConfigType,
                 img_size: int = 256,
                 checkpoint: Optional[str] = None,
                 loss_focal: ConfigType = dict(
                     type='FocalLoss',
                     use_sigmoid=True,
                     gamma=2.0,
                     alpha=0.5,
                     loss_weight=40.0),
                 loss_dice: ConfigType = dict(
                     type='DiceLoss',
                     use_sigmoid=True,
                     activate=True,
                     naive_dice=True,
                     eps=1.0,
                     loss_weight=1.0),
                 loss_iou: ConfigType = dict(type='MSELoss', loss_weight=1.0),
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.img_size = img_size
        self.image_encoder = MODELS.build(image_encoder)
        self.prompt_encoder = MODELS.build(prompt_encoder)
        self.mask_decoder = MODELS.build(mask_decoder)
        self._check_sizes()
        self.loss_focal = MODELS.build(loss_focal)
        self.loss_dice = MODELS.build(loss_dice)
        self.loss_iou = MODELS.build(loss_iou)
        self.train_cfg = dict(
            num_prompts_per_img=20,
            num_neg_prompts=1,
            mask_threshold=0.0,
            embedding_cache_size=0,
            autocast_dtype=None)
        self.train_cfg.update(train_cfg or {})
        if (self.train_cfg['embedding_cache_size'] > 0
                and not getattr(self.image_encoder, 'frozen', False)):
            raise ValueError('train_cfg.embedding_cache_size > 0 needs a '
                             'frozen image encoder (image_encoder.frozen='
                             'True): a trained encoder changes embeddings')
        self._embedding_cache: 'OrderedDict[str, Tensor]' = OrderedDict()
        self.test_cfg = dict(
            num_neg_prompts=1,
            chunk_size=256,
            mask_threshold=0.0,
            tile_overlap=img_size // 4,
            autocast_dtype=None)
        self.test_cfg.update(test_cfg or {})
        for name, cfg in (('train_cfg', self.train_cfg),
                          ('test_cfg', self.test_cfg)):
            check_autocast_dtype(cfg['autocast_dtype'],
                                 f'{name}.autocast_dtype')
        if not 0 <= self.test_cfg['tile_overlap'] < img_size:
            raise ValueError('test_cfg.tile_overlap must be in [0, img_size),'
                             f' got {self.test_cfg["tile_overlap"]}')
        self.checkpoint = checkpoint
        if checkpoint is not None:
            # Loaded at build, not in init_weights: Runner.test() never calls
            # init_weights, and these parts are plain nn.Modules that
            # init_weights leaves untouched.
            load_sam_checkpoint(self, checkpoint)

    def _check_sizes(self) -> None:
        """Fail early when the three parts disagree on sizes."""
        emb_size = tuple(self.image_encoder.embedding_size)
        pe = self.prompt_encoder
        if tuple(pe.image_embedding_size) != emb_size:
            raise ValueError(
                'prompt_encoder.image_embedding_size '
                f'{tuple(pe.image_embedding_size)} does not match the image '
                f'encoder output grid {emb_size} (img_size {self.img_size})')
        if tuple(pe.input_image_size) != (self.img_size, self.img_size):
            raise ValueError(
                f'prompt_encoder.input_image_size {tuple(pe.input_image_size)}'
                f' must be (img_size, img_size) = {(self.img_size,) * 2}')
        enc_size = getattr(self.image_encoder, 'img_size', self.img_size)
        if enc_size != self.img_size:
            raise ValueError(f'image_encoder.img_size {enc_size} != '
                             f'img_size {self.img_size}')
        channels = self.image_encoder.out_channels
        if (pe.embed_dim != channels
                or self.mask_decoder.transformer_dim != channels):
            raise ValueError(
                f'image encoder output channels ({channels}), '
                f'prompt_encoder.embed_dim ({pe.embed_dim}) and '
                'mask_decoder.transformer_dim '
                f'({self.mask_decoder.transformer_dim}) must be equal')

    # ------------------------------------------------------------------
    # API shared with the end-to-end model (docs/design.md)
    # ------------------------------------------------------------------
    def encode_image(self, inputs: Tensor) -> Tensor:
        """Run the image encoder.

        Args:
            inputs (Tensor): (B, 3, S, S) normalised RGB, S = ``img_size``
                (already padded).

        Returns:
            Tensor: (B, C, h, w) image embeddings (h = w = 16 for a ViT at
            256 px, 64 for LiteMedSAM). Computed without autograd when the
            image encoder is frozen.
        """
        if inputs.dim() != 4 or tuple(inputs.shape[-2:]) != (self.img_size,
                                                             self.img_size):
            raise ValueError(
                f'encode_image expects (B, 3, {self.img_size}, '
                f'{self.img_size}) inputs, got {tuple(inputs.shape)}; pad '
                'or crop to img_size (data_preprocessor pad_size_divisor, '
                'RandomCrop)')
        if getattr(self.image_encoder, 'frozen', False):
            with torch.no_grad():
                return self.image_encoder(inputs)
        return self.image_encoder(inputs)

    def decode_prompts(self,
                       image_embedding: Tensor,
                       point_coords: Tensor,
                       point_labels: Tensor,
                       chunk_size: int = 256,
                       upsample: bool = True) -> Tuple[Tensor, Tensor]:
        """Decode one mask per prompt for a single image.

        Args:
            image_embedding (Tensor): (1, C, h, w) from :meth:`encode_image`.
            point_coords (Tensor): (N, P, 2) x, y in the S x S input frame,
                pixels (pixel centres at integer coordinates).
            point_labels (Tensor): (N, P) 1 positive, 0 negative,
                -1 padding.
            chunk_size (int): Prompts per decoder batch (bounds memory).
            upsample (bool): Return logits at S x S (True) or on the
                decoder's low-resolution grid (4h x 4w, False).

        Returns:
            Tuple[Tensor, Tensor]: mask logits (N, S, S) (or (N, 4h, 4w))
            and predicted IoU (N,).
        """
        if (point_coords.dim() != 3 or point_coords.size(-1) != 2
                or point_labels.shape != point_coords.shape[:2]):
            raise ValueError(
                'decode_prompts: point_coords must be (N, P, 2) and '
                'point_labels (N, P), got '
                f'{tuple(point_coords.shape)} and '
                f'{tuple(point_labels.shape)}')
        return self._decode(image_embedding, (point_coords, point_labels),
                            None, chunk_size, upsample)

    def decode_boxes(self,
                     image_embedding: Tensor,
                     boxes: Tensor,
                     chunk_size: int = 256,
                     upsample: bool = True) -> Tuple[Tensor, Tensor]:
        """Decode one mask per box prompt for a single image.

        Args:
            image_embedding (Tensor): (1, C, h, w) from :meth:`encode_image`.
            boxes (Tensor): (N, 4) x1, y1, x2, y2 in the S x S input frame,
                pixels, maxima inclusive (last column / row of the object,
                as SAM and MedSAM use them).
            chunk_size (int): Prompts per decoder batch.
            upsample (bool): As in :meth:`decode_prompts`.

        Returns:
            Tuple[Tensor, Tensor]: mask logits (N, S, S) (or (N, 4h, 4w))
            and predicted IoU (N,).
        """
        if boxes.dim() != 2 or boxes.size(-1) != 4:
            raise ValueError('decode_boxes: boxes must be (N, 4) x1, y1, x2,'
                             f' y2, got {tuple(boxes.shape)}')
        return self._decode(image_embedding, None, boxes, chunk_size,
                            upsample)

    def _decode(self, image_embedding: Tensor,
                points: Optional[Tuple[Tensor, Tensor]],
                boxes: Optional[Tensor], chunk_size: int,
                upsample: bool) -> Tuple[Tensor, Tensor]:
        """Chunked prompt encoding + shared-image mask decoding."""
        if image_embedding.dim() != 4 or image_embedding.size(0) != 1:
            raise ValueError('decoding takes one image embedding of shape '
                             f'(1, C, h, w), got '
                             f'{tuple(image_embedding.shape)}')
        if chunk_size < 1:
            raise ValueError(f'chunk_size must be >= 1, got {chunk_size}')
        h, w = image_embedding.shape[-2:]
        out_size = (self.img_size, self.img_size) if upsample else (4 * h,
                                                                    4 * w)
        num_prompts = len(points[0]) if points is not None else len(boxes)
        if num_prompts == 0:
            return (image_embedding.new_zeros((0, ) + out_size),
                    image_embedding.new_zeros((0, )))
        image_pe = self.prompt_encoder.get_dense_pe()
        masks, ious = [], []
        for start in range(0, num_prompts, chunk_size):
            chunk = slice(start, start + chunk_size)
            sparse, dense = self.prompt_encoder(
                points=None if points is None else
                (points[0][chunk].float(), points[1][chunk]),
                boxes=None if boxes is None else boxes[chunk].float(),
                masks=None)
            # Without mask prompts the dense embedding is one vector for
            # every prompt: keep a single copy, the decoder broadcasts it.
            logits, iou = self.mask_decoder.predict_single_masks(
                image_embedding, image_pe, sparse, dense[:1])
            if tuple(logits.shape[-2:]) != out_size:
                logits = F.interpolate(
                    logits.unsqueeze(1),
                    size=out_size,
                    mode='bilinear',
                    align_corners=False).squeeze(1)
            masks.append(logits)
            ious.append(iou)
        return torch.cat(masks), torch.cat(ious)

    # ------------------------------------------------------------------
    # mmdet detector interface
    # ------------------------------------------------------------------
    def extract_feat(self, batch_inputs: Tensor) -> Tensor:
        """(B, 3, S, S) -> (B, C, h, w) image embeddings."""
        return self.encode_image(batch_inputs)

    def _forward(self,
                 batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None) -> tuple:
        """Raw outputs: embeddings, plus per-image (mask logits, IoU) for
        the ground-truth point prompts when samples are given."""
        embeddings = self.encode_image(batch_inputs)
        if batch_data_samples is None:
            return (embeddings, )
        outs = []
        for i, sample in enumerate(batch_data_samples):
            coords, labels = build_point_prompts(
                self._gt_points(sample).to(embeddings.device),
                self.test_cfg['num_neg_prompts'])
            outs.append(
                self.decode_prompts(embeddings[i:i + 1], coords, labels,
                                    self.test_cfg['chunk_size']))
        return embeddings, outs

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Prompt Z random nuclei per image and compute the losses.

        Args:
            batch_inputs (Tensor): (B, 3, S, S) normalised, padded inputs.
            batch_data_samples (list[DetDataSample]): with
                ``gt_instances.masks`` (BitmapMasks, padded S x S frame).

        Returns:
            dict[str, Tensor]: ``loss_focal``, ``loss_dice``, ``loss_iou``.
        """
        cfg = self.train_cfg
        with autocast_context(cfg['autocast_dtype'], batch_inputs.device):
            all_logits, all_ious, all_targets = self._decode_training_prompts(
                batch_inputs, batch_data_samples)
        if not all_logits:
            # No nucleus in the batch: zero losses that still reach every
            # trainable parameter, so backward() and DDP keep working.
            zero = batch_inputs.new_zeros(()) + sum(
                p.sum() for p in self.parameters() if p.requires_grad) * 0.
            return dict(loss_focal=zero, loss_dice=zero, loss_iou=zero)
        logits = torch.cat(all_logits).float()
        ious = torch.cat(all_ious).float()
        targets = torch.cat(all_targets).float()
        return self.mask_losses(logits, ious, targets,
                                cfg['mask_threshold'])

    def _decode_training_prompts(
            self, batch_inputs: Tensor, batch_data_samples: SampleList
    ) -> Tuple[List[Tensor], List[Tensor], List[Tensor]]:
        """Draw Z prompts per image and decode them (see :meth:`loss`).

        Returns:
            Tuple[list, list, list]: per image with nuclei, mask logits
            (Z, S, S), predicted IoU (Z,) and target masks (Z, S, S) bool.
        """
        cfg = self.train_cfg
        if cfg['embedding_cache_size'] > 0:
            embeddings = self._encode_cached(batch_inputs)
        else:
            embeddings = self.encode_image(batch_inputs)
        all_logits, all_ious, all_targets = [], [], []
        for i, sample in enumerate(batch_data_samples):
            gt_masks = sample.gt_instances.masks
            num_gts = len(gt_masks)
            if num_gts == 0:
                continue
            masks = gt_masks.to_tensor(
                dtype=torch.bool, device=embeddings.device)
            if tuple(masks.shape[-2:]) != (self.img_size, self.img_size):
                raise ValueError(
                    f'gt_instances.masks of {sample.metainfo.get("img_path")}'
                    f' are {tuple(masks.shape[-2:])}, expected the padded '
                    f'{self.img_size} x {self.img_size} input frame (enable '
                    'data_preprocessor pad_mask=True)')
            keep = masks.flatten(1).any(1)  # masks cropped away entirely
            masks = masks[keep]
            if len(masks) == 0:
                continue
            points = sample_interior_points(masks)
            coords, labels = build_point_prompts(points,
                                                 cfg['num_neg_prompts'])
            chosen = torch.randperm(
                len(masks),
                device=masks.device)[:cfg['num_prompts_per_img']]
            logits, ious = self.decode_prompts(
                embeddings[i:i + 1],
                coords[chosen],
                labels[chosen],
                chunk_size=max(len(chosen), 1))
            all_logits.append(logits)
            all_ious.append(ious)
            all_targets.append(masks[chosen])
        return all_logits, all_ious, all_targets

    def mask_losses(self,
                    mask_logits: Tensor,
                    pred_ious: Tensor,
                    gt_masks: Tensor,
                    mask_threshold: float = 0.0) -> Dict[str, Tensor]:
        """Focal + dice + IoU-regression losses of M predicted masks.

        Args:
            mask_logits (Tensor): (M, H, W) mask logits.
            pred_ious (Tensor): (M,) predicted IoU.
            gt_masks (Tensor): (M, H, W) 0/1 target masks.
            mask_threshold (float): Logit threshold of the predicted mask
                whose IoU with the target is the IoU-head target.

        Returns:
            dict[str, Tensor]: ``loss_focal``, ``loss_dice``, ``loss_iou``.
        """
        gt_masks = gt_masks.float()
        with torch.no_grad():
            binary = mask_logits > mask_threshold
            gt_bool = gt_masks > 0.5
            inter = (binary & gt_bool).flatten(1).sum(1)
            union = (binary | gt_bool).flatten(1).sum(1)
            iou_targets = inter.float() / union.clamp(min=1).float()
        return dict(
            loss_focal=self.loss_focal(
                mask_logits.flatten(1), gt_masks.flatten(1)),
            loss_dice=self.loss_dice(mask_logits, gt_masks),
            loss_iou=self.loss_iou(pred_ious, iou_targets))

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Segment the nuclei prompted by the ground-truth points.

        Args:
            batch_inputs (Tensor): (B, 3, H, W) normalised inputs, H and W
                multiples of ``img_size`` (padded here otherwise).
            batch_data_samples (list[DetDataSample]): with
                ``gt_instances.points`` (N, 2) and ``labels`` in the
                ``img_shape`` frame.
            rescale (bool): Return masks in the ``ori_shape`` frame.

        Returns:
            list[DetDataSample]: ``pred_instances`` with ``masks`` (N, H, W)
            bool, ``labels`` (the GT labels), ``scores`` (predicted IoU),
            ``bboxes`` (tight xyxy boxes of the masks) and ``points`` (the
            positive prompts), in the original image frame.
        """
        results = []
        with autocast_context(self.test_cfg['autocast_dtype'],
                            batch_inputs.device):
            for i, sample in enumerate(batch_data_samples):
                results.append(
                    self._predict_single(batch_inputs[i], sample, rescale))
        return self.add_pred_to_datasample(batch_data_samples, results)

    # ------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------
    def _encode_cached(self, batch_inputs: Tensor) -> Tensor:
        """:meth:`encode_image` through the LRU embedding cache (frozen
        image encoder only)."""
        cache = self._embedding_cache
        keys = [
            hashlib.blake2b(
                x.detach().contiguous().cpu().numpy().tobytes(),
                digest_size=16).hexdigest() for x in batch_inputs
        ]
        missing = [i for i, k in enumerate(keys) if k not in cache]
        if missing:
            fresh = self.encode_image(batch_inputs[missing])
            for i, emb in zip(missing, fresh):
                cache[keys[i]] = emb.detach()
        out = []
        for k in keys:
            cache.move_to_end(k)
            out.append(cache[k])
        while len(cache) > self.train_cfg['embedding_cache_size']:
            cache.popitem(last=False)
        return torch.stack(out).to(batch_inputs.device)

    @staticmethod
    def _gt_points(sample: DetDataSample) -> Tensor:
        gt = sample.gt_instances
        if 'points' not in gt:
            raise KeyError(
                f'{sample.metainfo.get("img_path", "sample")}: '
                'gt_instances.points is missing; SAMPromptSegmentor.predict '
                'prompts with ground-truth points (add NucleusPointsFromMasks'
                ' and PackNucleusInputs to the test pipeline)')
        points = gt.points
        if not isinstance(points, Tensor):
            points = torch.as_tensor(points)
        return points.float().reshape(-1, 2)

    def _tile_starts(self, length: int) -> List[int]:
        """Tile origins along one axis: stride S - overlap, last flush."""
        size = self.img_size
        if length <= size:
            return [0]
        stride = size - self.test_cfg['tile_overlap']
        starts = list(range(0, length - size, stride))
        return starts + [length - size]

    def _predict_single(self, inputs: Tensor, sample: DetDataSample,
                        rescale: bool) -> InstanceData:
        """Oracle prediction for one (3, H, W) input."""
        size = self.img_size
        img_h, img_w = sample.metainfo.get('img_shape', inputs.shape[-2:])
        # Pad to whole tiles with 0, as DetDataPreprocessor pads after
        # normalisation.
        pad_h = max(size, img_h) - inputs.size(-2)
        pad_w = max(size, img_w) - inputs.size(-1)
        if pad_h > 0 or pad_w > 0:
            inputs = F.pad(inputs, (0, max(pad_w, 0), 0, max(pad_h, 0)))
        points = self._gt_points(sample).to(inputs.device)
        labels = sample.gt_instances.labels
        num = points.size(0)
        coords, point_labels = build_point_prompts(
            points, self.test_cfg['num_neg_prompts'])
        masks = torch.zeros((num, img_h, img_w),
                            dtype=torch.bool,
                            device=inputs.device)
        scores = inputs.new_zeros((num, ), dtype=torch.float32)
        if num > 0:
            tiles = [(x0, y0) for y0 in self._tile_starts(img_h)
                     for x0 in self._tile_starts(img_w)]
            owner = self._assign_tiles(points, tiles, img_h, img_w)
            for t, (x0, y0) in enumerate(tiles):
                idx = torch.nonzero(owner == t).flatten()
                if idx.numel() == 0:
                    continue
                tile = inputs[None, :, y0:y0 + size, x0:x0 + size]
                embedding = self.encode_image(tile)
                local = coords[idx] - coords.new_tensor([x0, y0])
                local_labels = point_labels[idx].clone()
                # Negatives of nuclei outside this tile become padding.
                outside = ((local < 0) | (local > size - 1)).any(-1)
                local_labels[outside & (local_labels == 0)] = -1
                local[local_labels == -1] = 0
                logits, ious = self.decode_prompts(
                    embedding, local, local_labels,
                    self.test_cfg['chunk_size'])
                h = min(size, img_h - y0)
                w = min(size, img_w - x0)
                masks[idx, y0:y0 + h, x0:x0 + w] = (
                    logits[:, :h, :w] > self.test_cfg['mask_threshold'])
                scores[idx] = ious.float()
        points_out = points.clone()
        if rescale:
            ori_h, ori_w = sample.metainfo.get('ori_shape', (img_h, img_w))
            if (ori_h, ori_w) != (img_h, img_w):
                masks = self._resize_masks(masks, (ori_h, ori_w))
                points_out[:, 0] *= ori_w / img_w
                points_out[:, 1] *= ori_h / img_h
        result = InstanceData()
        result.masks = masks
        result.labels = torch.as_tensor(
            labels, dtype=torch.long, device=inputs.device).reshape(-1)
        result.scores = scores
        result.bboxes = mask2bbox(masks)
        result.points = points_out
        return result

    def _assign_tiles(self, points: Tensor, tiles: Sequence[Tuple[int, int]],
                      img_h: int, img_w: int) -> Tensor:
        """Index of the tile where each point is farthest from an inner
        tile edge (edges on the image border do not count).

        Args:
            points (Tensor): (N, 2) x, y in the image frame.
            tiles (Sequence[tuple]): Tile origins (x0, y0).

        Returns:
            Tensor: (N,) long tile indices.
        """
        size = self.img_size
        origin = points.new_tensor(tiles)  # (T, 2)
        x = points[:, None, 0]
        y = points[:, None, 1]
        x0, y0 = origin[None, :, 0], origin[None, :, 1]
        inf = torch.full_like(x - x0, float('inf'))
        left = torch.where(x0 > 0, x - x0, inf)
        top = torch.where(y0 > 0, y - y0, inf)
        right = torch.where(x0 + size < img_w, x0 + size - 1 - x, inf)
        bottom = torch.where(y0 + size < img_h, y0 + size - 1 - y, inf)
        margin = torch.stack([left, top, right, bottom]).amin(0)
        return margin.argmax(1)

    @staticmethod
    def _resize_masks(masks: Tensor, shape: Tuple[int, int],
                      chunk: int = 64) -> Tensor:
        """Bilinearly resize (N, h, w) bool masks to ``shape``, in chunks."""
        out = masks.new_zeros((masks.size(0), ) + tuple(shape))
        for s in range(0, masks.size(0), chunk):
            out[s:s + chunk] = F.interpolate(
                masks[s:s + chunk, None].float(),
                size=shape,
                mode='bilinear',
                align_corners=False)[:, 0] >= 0.5
        return out
