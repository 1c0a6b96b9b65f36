# The 25 real PanNuke breast tiles of ../shared/data/pannuke_breast_coco25
# (2 classes: Neoplastic vs No-neoplastic), converted with the generic
# converter into a seeded 15/5/5 train/val/test split (docs/datasets.md).
_base_ = './pannuke.py'

data_root = 'data/pannuke_coco25/'
metainfo = dict(classes=('Neoplastic', 'No-neoplastic'),
                palette=[(255, 0, 0), (0, 255, 0)])
train_dataloader = dict(batch_size=4,
                        dataset=dict(data_root=data_root,
                                     ann_file='annotations/train.json',
                                     metainfo=metainfo))
val_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='annotations/val.json', metainfo=metainfo))
test_dataloader = dict(dataset=dict(
    data_root=data_root, ann_file='annotations/test.json', metainfo=metainfo))
