# promptnucseg_kumar.py with the SAM ViT-H segmentor.
_base_ = './promptnucseg_kumar.py'

model = dict(
    segmentor=dict(image_encoder=dict(arch='vit_h')),
    segmentor_checkpoint='checkpoints/promptnucseg/'
    'segmentor_sam-h_kumar.pth')
