# PanNuke fold order 321: train fold 3, validate on fold 2, test on fold 1.
_base_ = './prompter_pannuke.py'

train_dataloader = dict(dataset=dict(ann_file='annotations/fold3.json'))
val_dataloader = dict(dataset=dict(ann_file='annotations/fold2.json'))
test_dataloader = dict(dataset=dict(ann_file='annotations/fold1.json'))
