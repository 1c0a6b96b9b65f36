# PanNuke, 5 classes, official fold order 123 (train fold 1, val fold 2,
# test fold 3). Other orders: inherit pannuke_fold213.py / pannuke_fold321.py,
# or override the three ann_file entries with --cfg-options (docs/datasets.md).
# Prepare with tools/dataset_converters/pannuke.py.
_base_ = './nucleus_pipelines.py'

dataset_type = 'NucleusDataset'
data_root = 'data/pannuke/'
# µm/px of the training images (40x scans): whole slides are read at this
# resolution (tools/infer_wsi.py, docs/wsi.md).
data_mpp = 0.25
metainfo = dict(classes=('Neoplastic', 'Inflammatory', 'Connective', 'Dead',
                         'Epithelial'),
                palette=[(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0),
                         (255, 165, 0)])

train_dataloader = dict(
    batch_size=16,  # upstream prompter batch for PanNuke
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/fold1.json',
        data_prefix=dict(img='images/'),
        metainfo=metainfo,
        filter_cfg=None,  # keep tiles without nuclei (negatives)
        pipeline=_base_.train_pipeline,
        backend_args=None))
val_dataloader = dict(batch_size=1,
                      num_workers=2,
                      persistent_workers=True,
                      drop_last=False,
                      sampler=dict(type='DefaultSampler', shuffle=False),
                      dataset=dict(type=dataset_type,
                                   data_root=data_root,
                                   ann_file='annotations/fold2.json',
                                   data_prefix=dict(img='images/'),
                                   metainfo=metainfo,
                                   test_mode=True,
                                   pipeline=_base_.test_pipeline,
                                   backend_args=None))
test_dataloader = dict(batch_size=1,
                       num_workers=2,
                       persistent_workers=True,
                       drop_last=False,
                       sampler=dict(type='DefaultSampler', shuffle=False),
                       dataset=dict(type=dataset_type,
                                    data_root=data_root,
                                    ann_file='annotations/fold3.json',
                                    data_prefix=dict(img='images/'),
                                    metainfo=metainfo,
                                    test_mode=True,
                                    pipeline=_base_.test_pipeline,
                                    backend_args=None))

# Default: prompter point metrics (12 px); model configs override.
val_evaluator = dict(type='PointDetectionMetric', radius=12.0)
test_evaluator = val_evaluator
