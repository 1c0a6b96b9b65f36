"""SAM fine-tuned to segment one nucleus per point prompt (PromptNucSeg)."""
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures import DetDataSample, OptSampleList, SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.structures import PixelData
from torch import Tensor

from ..inference import (TiledDecoder, class_map, rescale_instances,
                         stitch_instances)
from ..losses import PromptMaskLoss
from ..sam.checkpoint import load_sam_checkpoint
from ..sam.parts import check_sam_parts
from ...utils.autocast import autocast_context, check_autocast_dtype
from ..utils.prompts import (build_point_prompts, resolve_num_neg_prompts,
                             sample_training_prompts)

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

    Training (paper Eq. 2, 7): Z random nuclei per image prompted by
    :func:`~pns_mmdet.models.utils.sample_training_prompts`, losses by
    :class:`~pns_mmdet.models.losses.PromptMaskLoss`.

    Inference (``predict``, the "oracle" mode of the paper's Table 7): the
    ground-truth points ``gt_instances.points`` are the prompts, run
    through the same engine as the end-to-end model
    (:class:`~pns_mmdet.models.inference.TiledDecoder` with
    ``policy='oracle'``: overlapping ``img_size`` tiles, each prompt decoded
    in the tile where it is most central, the K nearest prompts of that
    tile as negatives; then :func:`stitch_instances`). Oracle and
    end-to-end results thus differ only in the prompts.

    Args:
        image_encoder (dict): Config of the image encoder
            (``SAMImageEncoderViT`` or ``LiteMedSAMImageEncoder``).
        prompt_encoder (dict): Config of ``SAMPromptEncoder``; its
            ``image_embedding_size`` and ``input_image_size`` must match the
            image encoder (checked).
        mask_decoder (dict): Config of ``SAMMaskDecoder``.
        img_size (int): Side of the square model input, pixels. Defaults to
            256.
        num_neg_prompts (int): K, the negative prompts per prompt (paper
            Eq. 7), for training and testing. ``train_cfg`` / ``test_cfg``
            may override it on purpose (logged). Defaults to 1.
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
            ``num_neg_prompts`` (override of K), ``mask_threshold`` (logit,
            default 0.0), ``embedding_cache`` (default None; with a frozen
            image encoder, ``dict(type='EmbeddingCache', max_entries=N)``
            encodes each distinct input once, see
            :class:`~pns_mmdet.models.task_modules.EmbeddingCache`).
            Mixed-precision training is the optim wrapper's:
            ``optim_wrapper=dict(type='AutocastOptimWrapper',
            dtype='auto')``.
        test_cfg (dict, optional): ``num_neg_prompts`` (override of K),
            ``chunk_size`` (prompts per decoder batch, default 256),
            ``mask_threshold`` (default 0.0), ``tile_overlap`` (pixels,
            default img_size / 4, i.e. upstream's 64 at 256 px; the one
            owner of the segmentor tile overlap, also for the end-to-end
            model), ``nms_iou_thr`` (box NMS of the oracle, default None =
            every prompt keeps its mask), ``autocast_dtype``.
        data_preprocessor (dict, optional): ``DetDataPreprocessor`` config;
            it should pad to multiples of ``img_size``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 image_encoder: ConfigType,
                 prompt_encoder: ConfigType,
                 mask_decoder: ConfigType,
                 img_size: int = 256,
                 num_neg_prompts: int = 1,
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
        check_sam_parts(self.image_encoder, self.prompt_encoder,
                        self.mask_decoder, img_size)
        self.mask_loss = PromptMaskLoss(loss_focal, loss_dice, loss_iou)
        self.num_neg_prompts = int(num_neg_prompts)
        self.train_cfg = dict(
            num_prompts_per_img=20,
            num_neg_prompts=None,
            mask_threshold=0.0,
            embedding_cache=None)
        self.train_cfg.update(train_cfg or {})
        self.test_cfg = dict(
            num_neg_prompts=None,
            chunk_size=256,
            mask_threshold=0.0,
            tile_overlap=img_size // 4,
            nms_iou_thr=None,
            autocast_dtype=None)
        self.test_cfg.update(test_cfg or {})
        check_autocast_dtype(self.test_cfg['autocast_dtype'],
                             'test_cfg.autocast_dtype')
        for name, cfg in (('train_cfg', self.train_cfg),
                          ('test_cfg', self.test_cfg)):
            cfg['num_neg_prompts'] = resolve_num_neg_prompts(
                self.num_neg_prompts, cfg['num_neg_prompts'],
                f'SAMPromptSegmentor {name}')
        for old, new in (('embedding_cache_size', "train_cfg.embedding_"
                          "cache=dict(type='EmbeddingCache', max_entries=N)"),
                         ('autocast_dtype', "optim_wrapper=dict(type='"
                          "AutocastOptimWrapper', dtype='auto')")):
            if old in self.train_cfg:
                raise ValueError(f'train_cfg.{old} is gone: use {new}')
        self.embedding_cache = None
        if self.train_cfg['embedding_cache'] is not None:
            if not getattr(self.image_encoder, 'frozen', False):
                raise ValueError(
                    'train_cfg.embedding_cache needs a frozen image encoder '
                    '(image_encoder.frozen=True): a trained encoder changes '
                    'embeddings')
            self.embedding_cache = TASK_UTILS.build(
                self.train_cfg['embedding_cache'])
        if not 0 <= self.test_cfg['tile_overlap'] < img_size:
            raise ValueError('test_cfg.tile_overlap must be in [0, img_size),'
                             f' got {self.test_cfg["tile_overlap"]}')
        self.checkpoint = checkpoint
        if checkpoint is not None:
            # Loaded at build, not in init_weights: Runner.test() never calls
            # init_weights, and these parts are plain nn.Modules that
            # init_weights leaves untouched.
            load_sam_checkpoint(self, checkpoint)

    # ------------ API shared with the end-to-end model (docs/design.md)
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

    # ----------------------------------------- mmdet detector interface
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
        # Mixed precision in training is the optim wrapper's
        # (AutocastOptimWrapper); the losses are computed in float32.
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
        if self.embedding_cache is not None:
            embeddings = self.embedding_cache.encode(batch_inputs,
                                                     self.encode_image)
        else:
            embeddings = self.encode_image(batch_inputs)
        all_logits, all_ious, all_targets = [], [], []
        for i, sample in enumerate(batch_data_samples):
            prompts = sample_training_prompts(
                sample, self.img_size, cfg['num_prompts_per_img'],
                cfg['num_neg_prompts'], embeddings.device)
            if prompts is None:
                continue
            coords, labels, targets = prompts
            logits, ious = self.decode_prompts(
                embeddings[i:i + 1], coords, labels,
                chunk_size=max(len(coords), 1))
            all_logits.append(logits)
            all_ious.append(ious)
            all_targets.append(targets)
        return all_logits, all_ious, all_targets

    def mask_losses(self,
                    mask_logits: Tensor,
                    pred_ious: Tensor,
                    gt_masks: Tensor,
                    mask_threshold: float = 0.0) -> Dict[str, Tensor]:
        """:class:`~pns_mmdet.models.losses.PromptMaskLoss` of M masks."""
        return self.mask_loss(mask_logits, pred_ious, gt_masks,
                              mask_threshold)

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Segment the nuclei prompted by the ground-truth points.

        Args:
            batch_inputs (Tensor): (B, 3, H, W) normalised inputs (any
                padding; each image is cut to its ``img_shape``).
            batch_data_samples (list[DetDataSample]): with
                ``gt_instances.points`` (N, 2) and ``labels`` in the
                ``img_shape`` frame.
            rescale (bool): Return masks in the ``ori_shape`` frame.

        Returns:
            list[DetDataSample]: ``pred_instances`` with ``masks`` (N, H, W)
            bool, ``labels`` (the GT labels), ``scores`` (predicted IoU),
            ``bboxes`` (xyxy, exclusive maxima) and ``points`` (the
            prompts), ascending score, and ``pred_inst_map`` (instance i =
            id i + 1), in the original image frame. Prompts whose mask is
            empty, or hidden by higher-scored masks, get no instance.
        """
        decoder = TiledDecoder.from_segmentor(self, policy='oracle')
        with autocast_context(self.test_cfg['autocast_dtype'],
                              batch_inputs.device):
            for inputs, sample in zip(batch_inputs, batch_data_samples):
                h, w = sample.metainfo.get('img_shape', inputs.shape[-2:])
                points = self._gt_points(sample).to(inputs.device)
                labels = torch.as_tensor(
                    sample.gt_instances.labels, dtype=torch.long,
                    device=inputs.device).reshape(-1)
                cands = decoder(inputs[:, :h, :w], points)
                instances, inst_map = stitch_instances(
                    cands, points, labels, (h, w),
                    nms_iou_thr=self.test_cfg['nms_iou_thr'])
                if rescale:
                    instances, inst_map = rescale_instances(
                        instances, inst_map,
                        sample.metainfo.get('ori_shape', (h, w)))
                sample.pred_instances = instances
                sample.pred_inst_map = PixelData(sem_seg=inst_map[None])
                sample.pred_class_map = PixelData(
                    sem_seg=class_map(inst_map, instances.labels)[None])
        return batch_data_samples

    # ---------------------------------------------------------- helpers
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
