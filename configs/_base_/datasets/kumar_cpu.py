# The CPU recipe's real H&E data (docs/accuracy.md), one COCO root with its
# own validation split (never the test file):
#   train: MoNuSeg 2018 test (14 tiles, 40x) + CPM-15 train (15 tiles;
#          the 7 at 20x enlarged 2x to 40x), in annotations/train.json;
#   val:   7 tiles of the MoNuSeg 2018 training release (the release Kumar
#          is cut from), annotations/val.json. Never trained on.
# Prepare with the commands of README "Train on your own data on a CPU".
_base_ = './kumar.py'

data_root = 'data/kumar_cpu/'
train_dataloader = dict(
    num_workers=1,
    persistent_workers=True,
    dataset=dict(data_root=data_root, ann_file='annotations/train.json'))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, ann_file='annotations/val.json'))
test_dataloader = val_dataloader

# The prompter trains on random 256 crops of the large tiles (one TinyViT
# tile, and 8 crops per step fit a CPU step), then the usual augmentations.
prompter_crop_size = (256, 256)
prompter_crop_pipeline = _base_.load_steps + [
    dict(type='RandomCrop',
         crop_size=prompter_crop_size,
         allow_negative_crop=True,
         recompute_bbox=True)
] + _base_.prompter_augs + _base_.pack_steps
