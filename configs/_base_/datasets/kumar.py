# Kumar (MoNuSeg 2018 training release, 16 train / 14 test tiles of
# 1000 x 1000, class-agnostic). No validation split upstream (last epoch is
# reported), so validation runs on the test file. Prepare with
# tools/dataset_converters/monuseg.py (one --split per folder).
_base_ = './nucleus_pipelines.py'

dataset_type = 'NucleusDataset'
data_root = 'data/kumar/'
# µm/px of the training images (40x scans): whole slides are read at this
# resolution (tools/infer_wsi.py, docs/wsi.md).
data_mpp = 0.25
metainfo = dict(classes=('nucleus', ), palette=[(0, 255, 0)])

train_dataloader = dict(
    batch_size=8,  # upstream prompter batch for Kumar
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(type=dataset_type,
                 data_root=data_root,
                 ann_file='annotations/train.json',
                 data_prefix=dict(img='images/'),
                 metainfo=metainfo,
                 filter_cfg=None,
                 pipeline=_base_.train_pipeline,
                 backend_args=None))
val_dataloader = dict(batch_size=1,
                      num_workers=2,
                      persistent_workers=True,
                      drop_last=False,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset=dict(type=dataset_type,
                                   data_root=data_root,
                                   ann_file='annotations/test.json',
                                   data_prefix=dict(img='images/'),
                                   metainfo=metainfo,
                                   test_mode=True,
                                   pipeline=_base_.test_pipeline,
                                   backend_args=None))
test_dataloader = val_dataloader

val_evaluator = dict(type='PointDetectionMetric', radius=12.0)
test_evaluator = val_evaluator
