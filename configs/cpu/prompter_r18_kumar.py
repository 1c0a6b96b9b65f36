# CPU recipe, ablation: the prompter of prompter_tinyvit_kumar.py with a
# ResNet-18 from random weights instead of the pretrained TinyViT (no
# ImageNet weights offline), same crops and budget. From scratch at full
# width, lr 2e-3 diverges (loss_cls 0.69 -> 17.6 in 3 steps): 5e-4 with a
# 50-step warm-up trains.
_base_ = ['./prompter_tinyvit_kumar.py']

r18_channels = [64, 128, 256, 512]
model = dict(
    # ImageNet-style standardisation for a randomly initialised CNN.
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375]),
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='BN'),
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=r18_channels),
    aux_mask_head=dict(in_channels=r18_channels))
max_iters = 240
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(paramwise_cfg=dict(_delete_=True))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
         end=50)
]
