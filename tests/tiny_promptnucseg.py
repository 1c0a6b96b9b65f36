"""The tests' one tiny random PromptNucSeg config (ResNet prompter with 8
base channels, 2-block 64-px SAM); builds in < 1 s. Used by the tool,
reliability and slide tests (tests/ is on sys.path through conftest.py)."""
import os.path as osp

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

TINY_CONFIG = '''
_base_ = [
    '{repo}/configs/_base_/models/promptnucseg.py',
    '{repo}/configs/_base_/default_runtime.py'
]
DP = dict(
    type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375], bgr_to_rgb=True)
model = dict(
    prompter=dict(
        type='NucleusPrompter', data_preprocessor=dict(DP, pad_size_divisor=8),
        backbone=dict(type='ResNet', depth=18, base_channels=8,
                      out_indices=(0, 1, 2, 3), init_cfg=None),
        neck=dict(type='FPN', in_channels=[8, 16, 32, 64], out_channels=16,
                  num_outs=4),
        bbox_head=dict(type='PointAnchorHead', num_classes={num_classes},
                       in_channels=16, feat_channels=16, hidden_dim=16,
                       stride=8),
        test_cfg=dict(nms_radius=6.0, score_thr={score_thr})),
    segmentor=dict(
        type='SAMPromptSegmentor', data_preprocessor=DP, img_size=64,
        image_encoder=dict(type='SAMImageEncoderViT', img_size=64,
                           embed_dim=32, depth=2, num_heads=2,
                           global_attn_indexes=(1, ), window_size=3,
                           out_chans=32),
        prompt_encoder=dict(type='SAMPromptEncoder', embed_dim=32,
                            image_embedding_size=(4, 4),
                            input_image_size=(64, 64)),
        mask_decoder=dict(type='SAMMaskDecoder', transformer_dim=32,
                          transformer_depth=1, transformer_mlp_dim=64,
                          transformer_num_heads=2, iou_head_hidden_dim=16)))
test_dataloader = dict(dataset=dict(
    type='NucleusDataset',
    metainfo=dict(classes=('tumour', 'immune'),
                  palette=[(255, 0, 0), (0, 0, 255)])))
'''


def tiny_config_text(num_classes: int = 2, score_thr: float = 0.999,
                     data_mpp=None) -> str:
    """The config text; ``score_thr`` 0.999 makes the random prompter find
    nothing (empty, deterministic outputs), a low one finds prompts
    everywhere; ``data_mpp`` adds that line (slide runs)."""
    text = TINY_CONFIG.format(repo=REPO, num_classes=num_classes,
                              score_thr=score_thr)
    if data_mpp is not None:
        text += f'\ndata_mpp = {data_mpp!r}\n'
    return text


def write_tiny_config(folder, score_thr: float = 0.999,
                      name: str = 'tiny_promptnucseg.py',
                      num_classes: int = 2, data_mpp=None) -> str:
    """Write the config into ``folder``; returns its path."""
    path = osp.join(str(folder), name)
    with open(path, 'w') as f:
        f.write(tiny_config_text(num_classes, score_thr, data_mpp))
    return path
