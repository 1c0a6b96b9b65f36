# segmentor_sam-b_cpm17.py with SAM ViT-L (sam_vit_l_0b3195.pth).
_base_ = './segmentor_sam-b_cpm17.py'

sam_checkpoint = 'checkpoints/sam_vit_l_0b3195.pth'
model = dict(checkpoint=sam_checkpoint, image_encoder=dict(arch='vit_l'))
