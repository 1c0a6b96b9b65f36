# CPM-17 (32 train / 32 test tiles of 500 or 600 px, class-agnostic). No
# validation split upstream, so validation runs on the test file. The
# prompter trains on random 500 x 500 crops, as upstream. Prepare with
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
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
