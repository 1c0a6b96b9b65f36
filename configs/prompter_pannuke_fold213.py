# PanNuke fold order 213: train fold 2, validate on fold 1, test on fold 3.
_base_ = './prompter_pannuke.py'

train_dataloader = dict(dataset=dict(ann_file='annotations/fold2.json'))
val_dataloader = dict(dataset=dict(ann_file='annotations/fold1.json'))
test_dataloader = dict(dataset=dict(ann_file='annotations/fold3.json'))
