# PromptNucSeg end-to-end model settings shared by every dataset; the leaf
# configs add the two parts (`prompter`, `segmentor` model configs) and
# their trained checkpoints. Stitching follows upstream PromptNucSeg.
model = dict(
    type='PromptNucSeg',
    # BGR -> RGB only; each part applies its own mean/std.
    data_preprocessor=dict(type='DetDataPreprocessor', bgr_to_rgb=True),
    test_cfg=dict(
        prompter_tile_size=1024,  # larger images: overlapping tiles
        prompter_tile_overlap=64,
        seg_tile_overlap=64,  # epsilon: 256 tiles every 192 px
        num_neg_prompts=1,  # K, as the segmentor is trained (Table 7)
        neg_prompts_both=False,  # upstream: decode with and without
        chunk_size=256,
        encode_batch=4,
        mask_threshold=0.0,
        edge_margin=7,  # drop masks this close to an inner tile edge
        decode_policy='all',
        nms_iou_thr=0.5,
        autocast_dtype=None,  # 'bfloat16' for fast CPU inference
        with_masks=True))
