# CPM-17 (32 train / 32 test tiles of 500 or 600 px, class-agnostic).
# Validation reads annotations/val.json (a val/ folder converted with
# --splits val), never the test file; upstream has no validation split, so
# the CPM-17 training leaf configs switch validation off. The prompter
# trains on random 500 x 500 crops, as upstream. Prepare with
# tools/dataset_converters/cpm17.py.
_base_ = './kumar.py'

data_root = 'data/cpm17/'
# CPM-17 mixes 20x and 40x tiles; the models are trained on them as given
# (data_mpp 0.25 from kumar.py, the 40x ones). Pass --model-mpp to
# tools/infer_wsi.py for another choice.
train_pipeline = _base_.load_steps + [
    dict(type='RandomCrop',
         crop_size=(500, 500),
         allow_negative_crop=True,
         recompute_bbox=True)
] + _base_.prompter_augs + _base_.pack_steps

train_dataloader = dict(
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
# Two partial dicts: each is merged into its own loader of kumar.py (val
# on val.json, test on test.json).
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
