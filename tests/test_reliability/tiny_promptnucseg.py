"""A tiny random PromptNucSeg config (ResNet-8-channel prompter, 2-block
128-px SAM) for tests that run the tools in-process; builds in < 1 s.

128 px so that the default tile overlaps (64 px in the detector's
``test_cfg`` before the tiling refactor, ``img_size // 4`` in the
segmentor's after it) are valid without naming either key."""
import os.path as osp

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

TINY_PROMPTNUCSEG = '''
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
        bbox_head=dict(type='PointAnchorHead', num_classes=2,
                       in_channels=16, feat_channels=16, hidden_dim=16,
                       stride=8),
        test_cfg=dict(nms_radius=6.0, score_thr={score_thr})),
    segmentor=dict(
        type='SAMPromptSegmentor', data_preprocessor=DP, img_size=128,
        image_encoder=dict(type='SAMImageEncoderViT', img_size=128,
                           embed_dim=32, depth=2, num_heads=2,
                           global_attn_indexes=(1, ), window_size=3,
                           out_chans=32),
        prompt_encoder=dict(type='SAMPromptEncoder', embed_dim=32,
                            image_embedding_size=(8, 8),
                            input_image_size=(128, 128)),
        mask_decoder=dict(type='SAMMaskDecoder', transformer_dim=32,
                          transformer_depth=1, transformer_mlp_dim=64,
                          transformer_num_heads=2, iou_head_hidden_dim=16)),
    prompter_checkpoint=None, segmentor_checkpoint=None)
test_dataloader = dict(dataset=dict(
    type='NucleusDataset',
    metainfo=dict(classes=('tumour', 'immune'),
                  palette=[(255, 0, 0), (0, 0, 255)])))
'''


def write_tiny_config(folder, score_thr: float = 0.999,
                      name: str = 'tiny_promptnucseg.py') -> str:
    """Write the config into ``folder``; ``score_thr`` 0.999 makes the
    random prompter find nothing (empty, deterministic outputs), a low one
    makes it find prompts everywhere."""
    path = osp.join(str(folder), name)
    with open(path, 'w') as f:
        f.write(TINY_PROMPTNUCSEG.format(repo=REPO, score_thr=score_thr))
    return path
