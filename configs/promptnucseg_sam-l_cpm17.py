# promptnucseg_cpm17.py with the SAM ViT-L segmentor.
_base_ = './promptnucseg_cpm17.py'

model = dict(
    segmentor=dict(image_encoder=dict(arch='vit_l')),
    segmentor_checkpoint='checkpoints/promptnucseg/'
    'segmentor_sam-l_cpm17.pth')
