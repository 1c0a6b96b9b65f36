# Kumar (MoNuSeg 2018 training release, 16 train / 14 test tiles of
# 1000 x 1000, class-agnostic). Validation reads its own split,
# annotations/val.json, never the test file: upstream has no validation
# split (it reports the last epoch), so the Kumar training leaf configs
# switch validation off; a config that has a val split (converted with
# --split val, or --split-ratios) keeps it, e.g. kumar_cpu.py. Prepare with
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
                                   ann_file='annotations/val.json',
                                   data_prefix=dict(img='images/'),
                                   metainfo=metainfo,
                                   test_mode=True,
                                   pipeline=_base_.test_pipeline,
                                   backend_args=None))
# The same loader on the test split (a copy: val and test differ in file).
test_dataloader = dict(
    val_dataloader,
    dataset=dict(val_dataloader['dataset'], ann_file='annotations/test.json'))

val_evaluator = dict(type='PointDetectionMetric', radius=12.0)
test_evaluator = val_evaluator
