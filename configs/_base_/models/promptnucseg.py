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
        # None: as the segmentor's test_cfg (K it was trained with, Table 7;
        # prompts per decoder call; mask logit threshold); the segmentor
        # tile overlap is segmentor.test_cfg.tile_overlap.
        num_neg_prompts=None,
        chunk_size=None,
        mask_threshold=None,
        neg_prompts_both=False,  # upstream: decode with and without
        encode_batch=4,
        edge_margin=7,  # drop masks this close to an inner tile edge
        decode_policy='all',
        nms_iou_thr=0.5,
        autocast_dtype=None,  # 'bfloat16' for fast CPU inference
        with_masks=True))
