# PromptNucSeg prompter on Kumar (class-agnostic, 1000 x 1000 tiles padded
# to 1008): anchor stride 16, P2-P5 sampled, beta 0.2, NMS 11 px,
# mask-aided filtering on. No validation split: the last checkpoint is the
# result, as upstream.
_base_ = [
    './_base_/models/prompter_convnext-s_fpn.py',
    './_base_/datasets/kumar.py',
    './_base_/schedules/prompter_adamw_200e.py',
    './_base_/default_runtime.py',
]

model = dict(
    data_preprocessor=dict(pad_size_divisor=16),
    bbox_head=dict(
        num_classes=1, stride=16, feat_levels=(0, 1, 2, 3),
        bg_cls_weight=0.2),
    test_cfg=dict(nms_radius=11.0, mask_filter=True))
find_unused_parameters = False  # every FPN level is sampled

val_dataloader = None
val_cfg = None
val_evaluator = None
default_hooks = dict(
    checkpoint=dict(
        type='CrashSafeCheckpointHook', interval=10, max_keep_ckpts=2))
