# The PanNuke prompter with mmdet's ResNet-50 instead of ConvNeXt-S: only
# the backbone and the channels read from it change.
# ImageNet weights are not downloaded: init_cfg=None is random init. To
# start from local torchvision weights add
#   --cfg-options model.backbone.init_cfg._delete_=True \
#     model.backbone.init_cfg.type=Pretrained \
#     model.backbone.init_cfg.checkpoint=checkpoints/resnet50-0676ba61.pth
_base_ = './prompter_pannuke.py'

r50_channels = [256, 512, 1024, 2048]
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None),
    neck=dict(in_channels=r50_channels),
    aux_mask_head=dict(in_channels=r50_channels))
