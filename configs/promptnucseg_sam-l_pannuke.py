# promptnucseg_pannuke.py with the SAM ViT-L segmentor.
_base_ = './promptnucseg_pannuke.py'

model = dict(
    segmentor=dict(image_encoder=dict(arch='vit_l')),
    segmentor_checkpoint='checkpoints/promptnucseg/'
    'segmentor_sam-l_pannuke.pth')
