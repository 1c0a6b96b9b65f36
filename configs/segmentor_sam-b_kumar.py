# SAM ViT-B segmentor fine-tuned on Kumar: random 256 crops of the 1000-px
# tiles, Z = 25, K = 1, AdamW 1e-4 for 200 epochs without decay (upstream's
# milestone 200 is never reached). The oracle test tiles the images into
# 256-px tiles overlapping by 64 px. No validation split: the last epoch.
_base_ = [
    './_base_/datasets/kumar.py', './_base_/models/segmentor_sam-b.py',
    './_base_/schedules/segmentor_adamw_200e.py', './_base_/default_runtime.py'
]

model = dict(train_cfg=dict(num_prompts_per_img=25))
train_dataloader = dict(
    batch_size=4,  # per GPU, as upstream (4 GPUs)
    dataset=dict(pipeline=_base_.segmentor_train_pipeline))
test_evaluator = dict(_delete_=True, type='NucleusInstanceMetric')
# Kumar has no validation split (upstream reports the last epoch): no
# validation, so tools/train.py never scores the test set. To validate,
# inherit a dataset config with a val split (as configs/cpu/ does) and set
# val_dataloader, val_cfg and val_evaluator together.
val_dataloader = None
val_cfg = None
val_evaluator = None

param_scheduler = []
# A config that adds a val split validates at the end only.
train_cfg = dict(val_interval=_base_.max_epochs)
default_hooks = dict(
    checkpoint=dict(
        type='CrashSafeCheckpointHook', interval=10, max_keep_ckpts=2))
