# PromptNucSeg prompter on CPM-17 (class-agnostic, random 500 x 500 training
# crops padded to 512): anchor stride 16, P2-P5 sampled, beta 0.25, NMS
# 12 px, mask-aided filtering on. No validation split: the last checkpoint
# is the result, as upstream.
_base_ = [
    './_base_/models/prompter_convnext-s_fpn.py',
    './_base_/datasets/cpm17.py',
    './_base_/schedules/prompter_adamw_200e.py',
    './_base_/default_runtime.py',
]

model = dict(
    data_preprocessor=dict(pad_size_divisor=16),
    bbox_head=dict(
        num_classes=1, stride=16, feat_levels=(0, 1, 2, 3),
        bg_cls_weight=0.25),
    test_cfg=dict(nms_radius=12.0, mask_filter=True))
find_unused_parameters = False  # every FPN level is sampled

val_dataloader = None
val_cfg = None
val_evaluator = None
default_hooks = dict(
    checkpoint=dict(
        type='CrashSafeCheckpointHook', interval=10, max_keep_ckpts=2))
