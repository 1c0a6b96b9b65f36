# PanNuke fold order 213: train fold 2, val fold 1, test fold 3.
_base_ = './pannuke.py'

train_dataloader = dict(dataset=dict(ann_file='annotations/fold2.json'))
val_dataloader = dict(dataset=dict(ann_file='annotations/fold1.json'))
test_dataloader = dict(dataset=dict(ann_file='annotations/fold3.json'))
