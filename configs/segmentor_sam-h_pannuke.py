# segmentor_sam-b_pannuke.py with SAM ViT-H (sam_vit_h_4b8939.pth).
_base_ = './segmentor_sam-b_pannuke.py'

sam_checkpoint = 'checkpoints/sam_vit_h_4b8939.pth'
model = dict(checkpoint=sam_checkpoint, image_encoder=dict(arch='vit_h'))
