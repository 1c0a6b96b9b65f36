"""A NucleusInferencer that segments dark discs exactly, for slide tests.

The model is the tiny PromptNucSeg config of tests/test_tools/test_infer.py
(one definition for all tool tests) with its two parts replaced by
deterministic stubs that behave like a trained model on disc slides:

* :class:`BlobPrompter` puts one point on every dark blob visible in its
  input (the blob pixel nearest its centroid), class 0 for blue-ish and 1
  for red-ish nuclei;
* :class:`BlobSegmentor` returns the dark blob under each prompt, with a
  score that grows with the blob's visible area (so a whole nucleus beats a
  cut one).

Both depend only on pixels, so whole-image and tiled runs can agree
exactly; :func:`disc_slide` writes slides of well-separated discs.

Used in-process (``stub_inferencer``) and as a launcher for CLI
subprocesses: ``python stub_inferencer.py ARGS...`` runs tools/infer_wsi.py
with the stub (``PNS_STUB_SLEEP`` seconds of sleep per prompter call slow
it down for the kill-and-resume test).
"""
import importlib.util
import os
import os.path as osp
import sys
import time

import numpy as np
import torch
from mmengine.structures import InstanceData
from scipy import ndimage
from torch import nn

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
_TOOL_TESTS = osp.join(REPO, 'tests', 'test_tools')


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_config_text(data_mpp=None) -> str:
    """The tests' tiny PromptNucSeg config (2 classes, score_thr 0.5),
    optionally with a ``data_mpp`` line."""
    import tiny_promptnucseg
    return tiny_promptnucseg.tiny_config_text(2, 0.5, data_mpp)


def write_tiny_config(folder, data_mpp=None, name='tiny_wsi.py') -> str:
    path = osp.join(str(folder), name)
    with open(path, 'w') as f:
        f.write(tiny_config_text(data_mpp))
    return path


def dark(rgb: np.ndarray) -> np.ndarray:
    """(H, W) bool nucleus pixels of an (H, W, 3) RGB array."""
    return rgb.mean(axis=-1) < 128


class BlobPrompter(nn.Module):
    """One point per dark blob of the (unpadded) input."""

    stride = 8
    test_cfg = dict(nms_radius=4.0)

    def __init__(self, sleep: float = 0.0):
        super().__init__()
        self.sleep = sleep

    def predict(self, batch, samples, rescale=False):
        if self.sleep:
            time.sleep(self.sleep)
        for img, sample in zip(batch, samples):
            th, tw = sample.metainfo['img_shape'][:2]
            rgb = img[:, :th, :tw].permute(1, 2, 0).cpu().numpy()
            lab, n = ndimage.label(dark(rgb))
            pts, labels = [], []
            for i, sl in enumerate(ndimage.find_objects(lab), 1):
                ys, xs = np.nonzero(lab[sl] == i)
                k = np.argmin((xs - xs.mean())**2 + (ys - ys.mean())**2)
                y, x = ys[k] + sl[0].start, xs[k] + sl[1].start
                pts.append((float(x), float(y)))
                labels.append(int(rgb[y, x, 0] > rgb[y, x, 2]))
            sample.pred_instances = InstanceData(
                points=torch.tensor(pts, dtype=torch.float32).reshape(-1, 2),
                labels=torch.tensor(labels, dtype=torch.long),
                scores=torch.ones(len(pts)))
        return samples


class BlobSegmentor(nn.Module):
    """The dark blob under each prompt, full-tile logits."""

    img_size = 256
    test_cfg = dict(tile_overlap=64, num_neg_prompts=0)

    def encode_image(self, inputs):
        return inputs.float()

    def decode_prompts(self, emb, coords, labels, chunk_size=256, **kwargs):
        rgb = emb[0].permute(1, 2, 0).cpu().numpy()
        lab, _ = ndimage.label(dark(rgb))
        lab = torch.from_numpy(lab)
        pos = coords[:, 0].round().long().clamp(0, self.img_size - 1)
        ids = lab[pos[:, 1], pos[:, 0]]
        masks = (lab[None] == ids[:, None, None]) & (ids[:, None, None] > 0)
        area = masks.flatten(1).sum(1).float()
        return masks.float() * 20 - 10, 0.5 + area.clamp(max=4000) / 10000


def stub_inferencer(config, device='cpu', sleep=0.0):
    """A NucleusInferencer built from ``config`` with the stub parts."""
    # The defining module: pns_mmdet.apis.NucleusInferencer may be this
    # file's StubInferencer (monkeypatched for the CLI).
    from pns_mmdet.apis.inference import NucleusInferencer
    inferencer = NucleusInferencer(config, device=device)
    inferencer.model.prompter = BlobPrompter(sleep)
    inferencer.model.segmentor = BlobSegmentor()
    return inferencer


class StubInferencer:
    """Drop-in for ``pns_mmdet.apis.NucleusInferencer`` in the CLI."""

    def __new__(cls, config, device=None, **kwargs):
        return stub_inferencer(
            config, device or 'cpu',
            float(os.environ.get('PNS_STUB_SLEEP', '0')))


def disc_slide(path, size, mpp, seed=0, spacing=40, radius=(5, 9),
               tissue=None):
    """Write a tiled TIFF of separated dark discs on pink tissue.

    Args:
        path (str): Output .tif.
        size (tuple[int, int]): (W, H) level 0.
        mpp (float): Level-0 µm/px (resolution tags); None writes none.
        seed (int): Placement and colour seed.
        spacing (int): Grid pitch of the disc centres (jittered), > 2 *
            max radius + 2 so discs never touch.
        radius (tuple[int, int]): Radius range (px).
        tissue (tuple, optional): x0, y0, x1, y1 of the tissue rectangle;
            outside it the slide is white, without nuclei. Whole slide by
            default.

    Returns:
        tuple[np.ndarray, int]: The (H, W, 3) RGB slide and the number of
        discs.
    """
    import tifffile
    w, h = size
    rng = np.random.default_rng(seed)
    rgb = np.full((h, w, 3), 255, np.uint8)
    x0, y0, x1, y1 = tissue or (0, 0, w, h)
    rgb[y0:y1, x0:x1] = (235, 170, 200)
    yy, xx = np.mgrid[:h, :w]
    jitter = (spacing - 2 * radius[1] - 3) // 2
    count = 0
    for cy in range(y0 + spacing // 2, y1 - radius[1], spacing):
        for cx in range(x0 + spacing // 2, x1 - radius[1], spacing):
            jx, jy = rng.integers(-jitter, jitter + 1, 2)
            r = rng.integers(radius[0], radius[1] + 1)
            colour = (60, 30, 120) if rng.random() < 0.6 else (120, 30, 60)
            sl = (slice(max(cy + jy - r, 0), cy + jy + r + 1),
                  slice(max(cx + jx - r, 0), cx + jx + r + 1))
            disc = ((xx[sl] - cx - jx)**2 + (yy[sl] - cy - jy)**2) <= r * r
            rgb[sl][disc] = colour
            count += 1
    kwargs = {}
    if mpp is not None:
        kwargs = dict(resolution=(1e4 / mpp, 1e4 / mpp),
                      resolutionunit='CENTIMETER')
    tifffile.imwrite(path, rgb, photometric='rgb', tile=(256, 256),
                     compression='zlib', **kwargs)
    return rgb, count


if __name__ == '__main__':
    import pns_mmdet.apis as apis
    apis.NucleusInferencer = StubInferencer
    infer_wsi = _load('pns_tool_infer_wsi',
                      osp.join(REPO, 'tools', 'infer_wsi.py'))
    sys.exit(infer_wsi.main(sys.argv[1:]))
