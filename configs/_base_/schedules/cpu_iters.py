# Iteration-based schedule for small datasets on a CPU (29 tiles are only a
# few iterations per epoch): `max_iters` steps, validation and the
# checkpoint at the end, a linear warm-up, constant learning rate after it.
# Leaf configs set max_iters (and may set val_interval / lr).
max_iters = 300
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters,
    val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=20)
]
auto_scale_lr = dict(enable=False, base_batch_size=8)
# Leaf configs also set (default_runtime owns these keys):
#   log_processor = dict(by_epoch=False)
#   default_hooks = dict(checkpoint=dict(type='CrashSafeCheckpointHook',
#                        by_epoch=False, interval=max_iters))
