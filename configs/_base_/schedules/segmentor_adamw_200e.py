# Upstream segmentor schedule: AdamW lr 1e-4, weight decay 1e-4, 200 epochs,
# x0.1 at epoch 100 (PanNuke; Kumar/CPM-17 never decay within 200 epochs).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4))
max_epochs = 200
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[100], gamma=0.1)
]
# Upstream: 4 GPUs x 16 (PanNuke) images per batch.
auto_scale_lr = dict(enable=False, base_batch_size=64)
