# CPU recipe, prompter: LiteMedSAM's pretrained TinyViT (stages 0-2 frozen:
# half the backward cost) + FPN + point/mask heads trained on random 256
# crops of the real train tiles, 8 crops per step, bf16 where the CPU runs
# it natively. Validation: point P/R/F1 on the 7 val tiles at the end.
# docs/accuracy.md gives the measured time and the validation numbers.
import mmengine.config as _mmc  # reads the Kumar prompter model config

_base_ = [
    '../_base_/datasets/kumar_cpu.py',
    '../_base_/schedules/cpu_iters.py',
    '../_base_/default_runtime.py',
]

# The model of prompter_tinyvit_kumar.py (Kumar head settings, mask-aided
# filtering), without its dataset and schedule.
model = _mmc.Config.fromfile(
    '{{ fileDirname }}/../prompter_tinyvit_kumar.py').model
model.backbone.frozen_stages = 3
find_unused_parameters = False
train_dataloader = dict(
    batch_size=8, dataset=dict(pipeline=_base_.prompter_crop_pipeline))
val_dataloader = _base_.test_dataloader
val_cfg = dict(type='ValLoop')
val_evaluator = dict(type='PointDetectionMetric', radius=12.0)
test_evaluator = val_evaluator

max_iters = 180
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
# Heads and FPN start from random weights: a larger step than the
# pretrained encoder stage gets; warm-up from cpu_iters.
optim_wrapper = dict(
    _delete_=True,
    type='AutocastOptimWrapper',
    dtype='auto',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.2)}),
    clip_grad=dict(max_norm=1.0, norm_type=2))
custom_hooks = [
    dict(type='EMAHook', ema_type='ExponentialMovingAverage',
         momentum=0.02, update_buffers=True, begin_iter=40, priority=49)
]
log_processor = dict(by_epoch=False)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(type='CrashSafeCheckpointHook', by_epoch=False,
                    interval=20, max_keep_ckpts=2))
