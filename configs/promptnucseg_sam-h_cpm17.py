# promptnucseg_cpm17.py with the SAM ViT-H segmentor.
_base_ = './promptnucseg_cpm17.py'

model = dict(
    segmentor=dict(image_encoder=dict(arch='vit_h')),
    segmentor_checkpoint='checkpoints/promptnucseg/'
    'segmentor_sam-h_cpm17.pth')
