# Upstream prompter schedule: AdamW, lr 1e-4 per 8 images (linear scaling,
# so PanNuke's batch 16 trains at 2e-4), weight decay 1e-4, no LR decay,
# gradient clipping 0.1, EMA of weights and buffers with decay 0.99 updated
# every step (copied during the first 5 epochs), 200 epochs.
max_epochs = 200
train_cfg = dict(
    type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4),
    clip_grad=dict(max_norm=0.1, norm_type=2))
param_scheduler = []  # constant learning rate, as upstream
# lr above is for 8 images per step; the runner rescales it to the actual
# total batch (GPUs x samples_per_gpu).
auto_scale_lr = dict(enable=True, base_batch_size=8)

custom_hooks = [
    # decay 0.99 == momentum 0.01; begin_epoch=6 copies the weights during
    # epochs 0-4 like upstream's warm-up (must be <= max_epochs: set
    # custom_hooks.0.begin_epoch=0 for runs shorter than 6 epochs).
    dict(
        type='EMAHook',
        ema_type='ExponentialMovingAverage',
        momentum=0.01,
        update_buffers=True,
        begin_epoch=6,
        priority=49)
]
# The checkpoint hook (save_best on the validation fold where one exists) is
# set in the leaf configs: default_runtime already defines default_hooks.
