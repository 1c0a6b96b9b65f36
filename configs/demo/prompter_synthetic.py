# A small prompter (ResNet-18 layout at 1/4 width, random init) that learns
# the synthetic tiles on 2 CPU cores in a few minutes. Generate the data:
#   python tools/dataset_converters/make_synthetic.py data/synthetic
# then: python tools/train.py configs/demo/prompter_synthetic.py
_base_ = [
    '../_base_/models/prompter_convnext-s_fpn.py',
    '../_base_/datasets/synthetic.py',
    '../_base_/schedules/prompter_adamw_200e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        base_channels=16,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='BN'),
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=32),
    bbox_head=dict(
        in_channels=32, feat_channels=32, hidden_dim=64, dropout=0.0),
    # Shared P2 instead of a second FPN, to stay small.
    aux_mask_head=dict(
        _delete_=True,
        type='AuxMaskHead',
        in_channels=32,
        feat_channels=32),
    # Synthetic touching nuclei have centres closer than upstream's 12 px.
    test_cfg=dict(nms_radius=6.0))

# From scratch on a few tiles: a larger step than the fine-tuning recipe,
# no EMA, a short run.
max_epochs = 100
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
optim_wrapper = dict(optimizer=dict(lr=2e-3), clip_grad=dict(max_norm=1.0))
auto_scale_lr = dict(enable=False)
custom_hooks = []
train_dataloader = dict(num_workers=0, persistent_workers=False)
val_dataloader = dict(num_workers=0, persistent_workers=False)
test_dataloader = val_dataloader
default_hooks = dict(
    logger=dict(interval=4),
    checkpoint=dict(
        type='CrashSafeCheckpointHook',
        interval=10,
        max_keep_ckpts=1,
        save_best='points/f1',
        rule='greater'))
