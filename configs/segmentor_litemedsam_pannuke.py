# The LiteMedSAM segmentor (TinyViT encoder, packaged weights, offline)
# fine-tuned on PanNuke (fold order 123) with the recipe of
# segmentor_sam-b_pannuke.py.
_base_ = [
    './_base_/datasets/pannuke.py', './_base_/models/segmentor_litemedsam.py',
    './_base_/schedules/segmentor_adamw_200e.py', './_base_/default_runtime.py'
]

train_dataloader = dict(
    batch_size=16,  # per GPU, as upstream (4 GPUs)
    dataset=dict(pipeline=_base_.segmentor_train_pipeline))
val_evaluator = dict(_delete_=True, type='NucleusInstanceMetric')
test_evaluator = val_evaluator

# Upstream validates from epoch 60 and keeps the best mPQ.
train_cfg = dict(val_begin=60, val_interval=10)
default_hooks = dict(
    checkpoint=dict(
        type='CrashSafeCheckpointHook', interval=10, max_keep_ckpts=2,
        save_best='nuclei/mpq', rule='greater'))
