"""Run a PromptNucSeg config on plain images (no dataset, no annotations)."""
import time
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmdet.structures import DetDataSample
from mmdet.visualization.palette import get_palette
from mmengine.config import Config
from mmengine.registry import init_default_scope

from ..utils.config import load_config

__all__ = ['NucleusResult', 'NucleusInferencer']


@dataclass
class NucleusResult:
    """Nuclei of one image, in its pixel frame.

    Instance id ``i`` of ``inst_map`` is described by entry ``i - 1`` of the
    per-instance arrays (ascending score order).

    Attributes:
        inst_map (np.ndarray): (H, W) int32, 0 = background.
        labels (np.ndarray): (N,) int64 class index (0-based).
        scores (np.ndarray): (N,) float32 predicted IoU.
        points (np.ndarray): (N, 2) float32 x, y of the prompts.
        boxes (np.ndarray): (N, 4) float32 xyxy (exclusive maxima) of the
            predicted masks.
        seconds (float): Wall time of the prediction.
    """
    inst_map: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    points: np.ndarray
    boxes: np.ndarray
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def num_nuclei(self) -> int:
        return len(self.labels)

    def class_map(self) -> np.ndarray:
        """(H, W) uint8: class index + 1 on nuclei, 0 elsewhere."""
        lut = np.zeros(len(self.labels) + 1, dtype=np.uint8)
        lut[1:] = self.labels + 1
        return lut[self.inst_map]


class NucleusInferencer:
    """Build a PromptNucSeg model from a config and segment RGB images.

    Args:
        config (str | Config): Path of a ``PromptNucSeg`` config.
        device (str): Torch device, e.g. 'cpu' or 'cuda' (default: CUDA
            when available, else CPU).
        prompter_checkpoint (str, optional): Trained prompter weights;
            replaces the config's ``model.prompter_checkpoint``. None keeps
            the config's value (it does not mean "no checkpoint").
        segmentor_checkpoint (str, optional): Likewise for
            ``model.segmentor_checkpoint``; None keeps the config's value.
            To run without a trained segmentor, with the weights its own
            config names (LiteMedSAM: the packaged weights; SAM: the SAM
            file; random when it names none), set that value to None:
            ``cfg_options={'model.segmentor_checkpoint': None}``
            (``--cfg-options model.segmentor_checkpoint=None`` on the
            tools). The model logs what it loads.
        cfg_options (dict, optional): Further config overrides (as
            ``--cfg-options``), applied before the two above.

    Example:
        >>> inferencer = NucleusInferencer('configs/promptnucseg_kumar.py')
        >>> result = inferencer(load_image('tile.png'))
        >>> result.inst_map.max(), inferencer.class_names
    """

    def __init__(self,
                 config: Union[str, Config],
                 device: Optional[str] = None,
                 prompter_checkpoint: Optional[str] = None,
                 segmentor_checkpoint: Optional[str] = None,
                 cfg_options: Optional[dict] = None) -> None:
        cfg = config if isinstance(config, Config) else load_config(
            config, required=('model', ))
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        if cfg.model.get('type') != 'PromptNucSeg':
            raise ValueError(
                f'{getattr(cfg, "filename", config)}: model type is '
                f'{cfg.model.get("type")!r}; the inferencer needs a '
                'PromptNucSeg config (configs/promptnucseg_*.py)')
        if prompter_checkpoint is not None:
            cfg.model.prompter_checkpoint = prompter_checkpoint
        if segmentor_checkpoint is not None:
            cfg.model.segmentor_checkpoint = segmentor_checkpoint
        if device is None:
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        if device.startswith('cuda') and not torch.cuda.is_available():
            raise RuntimeError(f'device "{device}" requested but CUDA is not '
                               'available; use --device cpu')
        init_default_scope(cfg.get('default_scope', 'mmdet'))
        from mmdet.registry import MODELS
        self.cfg = cfg
        self.device = torch.device(device)
        self.model = MODELS.build(cfg.model).to(self.device).eval()
        self.class_names, self.palette = self._metainfo(cfg)

    def _metainfo(self, cfg: Config):
        """Class names and RGB palette from the config's test dataset."""
        from mmdet.registry import DATASETS
        num_classes = self.model.prompter.bbox_head.num_classes
        meta = {}
        dataset = cfg.get('test_dataloader', {}).get('dataset', {})
        if dataset:
            cls = DATASETS.get(dataset.get('type', ''))
            meta.update(getattr(cls, 'METAINFO', {}) or {})
            meta.update(dataset.get('metainfo', None) or {})
        names = list(meta.get('classes', ()))
        if len(names) != num_classes:
            names = [f'class_{i}' for i in range(num_classes)]
        palette = meta.get('palette', None)
        if palette is None or len(palette) < num_classes:
            palette = 'random'
        return names, [tuple(int(c) for c in p)
                       for p in get_palette(palette, num_classes)]

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> NucleusResult:
        """Segment the nuclei of one image.

        Args:
            image (np.ndarray): (H, W, 3) uint8 RGB (as
                :func:`pns_mmdet.datasets.io.load_image` returns).

        Returns:
            NucleusResult: Instances in the image's pixel frame.
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f'expected an (H, W, 3) uint8 RGB image, got '
                             f'{image.shape} {image.dtype}')
        h, w = image.shape[:2]
        start = time.perf_counter()
        # The data preprocessor expects BGR, like every mmdet pipeline.
        bgr = torch.from_numpy(np.ascontiguousarray(image[..., ::-1]))
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.)))
        data = self.model.data_preprocessor(
            dict(inputs=[bgr.permute(2, 0, 1)], data_samples=[sample]),
            False)
        instances, inst_map = self.model.predict_image(
            data['inputs'][0], data['data_samples'][0], with_masks=False)
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        return NucleusResult(
            inst_map=inst_map.cpu().numpy().astype(np.int32),
            labels=instances.labels.cpu().numpy().astype(np.int64),
            scores=instances.scores.float().cpu().numpy(),
            points=instances.points.float().cpu().numpy(),
            boxes=instances.bboxes.float().cpu().numpy(),
            seconds=seconds)

    def run(self, images: Sequence[np.ndarray]) -> List[NucleusResult]:
        """Segment several images."""
        return [self(img) for img in images]
