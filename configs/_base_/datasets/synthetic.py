# Synthetic H&E-like tiles with PanNuke's 5 classes and tissue names, for
# smoke runs and demos on CPU. Generate with
#   python tools/dataset_converters/make_synthetic.py data/synthetic
_base_ = './pannuke.py'

data_root = 'data/synthetic/'
# The synthetic tiles are drawn at 0.25 µm/px, like PanNuke (data_mpp).
train_dataloader = dict(batch_size=4,
                        dataset=dict(data_root=data_root,
                                     ann_file='annotations/train.json'))
val_dataloader = dict(
    dataset=dict(data_root=data_root, ann_file='annotations/val.json'))
test_dataloader = dict(
    dataset=dict(data_root=data_root, ann_file='annotations/test.json'))
