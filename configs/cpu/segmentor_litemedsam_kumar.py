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

# Decoding a prompt costs as much as encoding a third of a crop: 2 crops x
# 32 prompts give as many masks per step as 4 x 16 at 3/4 of the time.
model = dict(
    image_encoder=dict(frozen=False, frozen_stages=3),
    train_cfg=dict(num_prompts_per_img=32))
train_dataloader = dict(
    batch_size=2, dataset=dict(pipeline=_base_.segmentor_train_pipeline))
val_evaluator = dict(_delete_=True, type='NucleusInstanceMetric')
test_evaluator = val_evaluator

max_iters = 300
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(
    type='AutocastOptimWrapper',
    dtype='auto',
    optimizer=dict(lr=4e-4),
    # the pretrained encoder stage moves at half the decoder's step
    paramwise_cfg=dict(custom_keys={'image_encoder': dict(lr_mult=0.5)}))
# Warm-up, then cosine decay to 1/10: a short run ends on averaged weights.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=20),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=20, end=max_iters,
         T_max=max_iters - 20, eta_min=4e-5)
]
log_processor = dict(by_epoch=False)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(type='CrashSafeCheckpointHook', by_epoch=False,
                    interval=20, max_keep_ckpts=2))
