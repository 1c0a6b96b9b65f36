# PromptNucSeg prompter (DPA-P2PNet + auxiliary mask head) with ConvNeXt-S,
# PanNuke settings (anchor stride 8, P2-P4 sampled, beta 0.4, NMS 12 px).
# ImageNet weights are read from a local file only: set
# `model.backbone.checkpoint` (e.g. via --cfg-options) to timm or Facebook
# ConvNeXt-S weights; None means random init (a log message says so).
model = dict(
    type='NucleusPrompter',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        # ImageNet mean/std in RGB order (also SAM's pixel mean/std).
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=8,  # = bbox_head.stride (lambda)
        pad_mask=False,
        pad_seg=True,
        seg_pad_value=255),  # padding is ignored by the mask loss
    backbone=dict(
        type='TimmFeatureBackbone',
        model_name='convnext_small',
        out_indices=(0, 1, 2, 3),
        checkpoint=None),
    neck=dict(
        type='FPN',
        in_channels=[96, 192, 384, 768],
        out_channels=256,
        num_outs=4),
    bbox_head=dict(
        type='PointAnchorHead',
        num_classes=5,
        in_channels=256,
        feat_channels=256,
        hidden_dim=256,
        dropout=0.1,
        stride=8,
        feat_strides=(4, 8, 16, 32),
        feat_levels=(0, 1, 2),
        with_deform=True,
        deform_level=0,
        bg_cls_weight=0.4,
        loss_cls=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_reg=dict(type='MSELoss', loss_weight=5e-3)),
    # Own one-level FPN on the backbone features, as upstream.
    aux_mask_head=dict(
        type='AuxMaskHead',
        in_channels=[96, 192, 384, 768],
        fpn_channels=256,
        feat_channels=256,
        feat_stride=4,
        norm_cfg=dict(type='BN'),
        # alpha 0.5 x weight 2 = alpha-free focal loss of weight 1.
        loss_mask=dict(
            type='FocalLoss',
            use_sigmoid=True,
            gamma=2.0,
            alpha=0.5,
            loss_weight=2.0)),
    train_cfg=dict(
        assigner=dict(
            type='HungarianAssigner',
            match_costs=[
                dict(type='ClassificationCost', weight=1.0),
                dict(type='PointL2Cost', weight=0.1)  # alpha, pixels
            ])),
    test_cfg=dict(
        score_thr=0.0,
        nms_radius=12.0,
        mask_filter=False,
        mask_thr=0.5,
        max_per_img=0,
        box_size=8.0))
# The P5 output conv of the FPN is unused when only P2-P4 are sampled.
find_unused_parameters = True
# BatchNorm (aux mask head, ResNet backbones) under DDP normalises with each
# process's batch; 'torch' converts it to SyncBatchNorm (GPUs only, refused
# on CPU; docs/distributed.md). None keeps per-process statistics.
sync_bn = None
