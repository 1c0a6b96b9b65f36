# CPU recipe, segmentor: the packaged LiteMedSAM fine-tuned for point
# prompts (+1 nearest negative) on random 256 crops of the real train
# tiles; the encoder's last stage and neck and the mask decoder train (the
# patch embedding and stages 0-2 stay frozen: half the backward cost).
# Validation: oracle prompts (true centroids) on the 7 val tiles.
# docs/accuracy.md gives the measured time and the validation numbers.
_base_ = [
    '../_base_/datasets/kumar_cpu.py',
    '../_base_/models/segmentor_litemedsam.py',
    '../_base_/schedules/cpu_iters.py',
    '../_base_/default_runtime.py',
]

model = dict(
    image_encoder=dict(frozen=False, frozen_stages=3),
    train_cfg=dict(num_prompts_per_img=16))
train_dataloader = dict(
    batch_size=4, dataset=dict(pipeline=_base_.segmentor_train_pipeline))
val_evaluator = dict(_delete_=True, type='NucleusInstanceMetric')
test_evaluator = val_evaluator

max_iters = 240
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(type='AutocastOptimWrapper', dtype='auto',
                     optimizer=dict(lr=2e-4))
log_processor = dict(by_epoch=False)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(type='CrashSafeCheckpointHook', by_epoch=False,
                    interval=20, max_keep_ckpts=2))
