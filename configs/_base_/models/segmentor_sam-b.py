# SAMPromptSegmentor with SAM ViT-B at a 256-px input (16 x 16 tokens), as in
# PromptNucSeg. The official 1024-px weights are loaded (strictly, with the
# position embeddings resized) from `sam_checkpoint`; download
# sam_vit_b_01ec64.pth from the segment-anything release into checkpoints/
# or set model.checkpoint=None for random weights.
img_size = 256
sam_checkpoint = 'checkpoints/sam_vit_b_01ec64.pth'

model = dict(
    type='SAMPromptSegmentor',
    img_size=img_size,
    checkpoint=sam_checkpoint,
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        # ImageNet mean/std = SAM's pixel_mean/std; BGR images -> RGB.
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        # Pad (after normalising, with 0 as SAM does) to whole 256 tiles;
        # masks too, so training targets live in the padded frame.
        pad_size_divisor=img_size,
        pad_mask=True),
    image_encoder=dict(
        type='SAMImageEncoderViT', arch='vit_b', img_size=img_size,
        frozen=False),
    prompt_encoder=dict(
        type='SAMPromptEncoder',
        embed_dim=256,
        image_embedding_size=(img_size // 16, img_size // 16),
        input_image_size=(img_size, img_size),
        frozen=True),  # frozen as upstream
    mask_decoder=dict(type='SAMMaskDecoder', transformer_dim=256),
    # omega * focal (omega = 20; alpha = 0.5 halves mmdet's focal, hence 40)
    # + per-mask dice + MSE(predicted IoU, IoU of the thresholded mask).
    loss_focal=dict(
        type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.5,
        loss_weight=40.0),
    loss_dice=dict(
        type='DiceLoss', use_sigmoid=True, activate=True, naive_dice=True,
        eps=1.0, loss_weight=1.0),
    loss_iou=dict(type='MSELoss', loss_weight=1.0),
    # K nearest negatives, for training and testing (K = 1 is the paper's
    # best, Table 7).
    num_neg_prompts=1,
    # Z nuclei per image (20 PanNuke, 25 Kumar/CPM-17).
    train_cfg=dict(num_prompts_per_img=20, mask_threshold=0.0),
    # tile_overlap: epsilon of the segmentor tiles (256 every 192 px), also
    # used by the end-to-end model.
    test_cfg=dict(chunk_size=256, mask_threshold=0.0, tile_overlap=64,
                  autocast_dtype=None))
