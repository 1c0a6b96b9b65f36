# PromptNucSeg end to end on PanNuke, fold order 123 (tested on fold 3): the
# ConvNeXt-S prompter of prompter_pannuke.py and the SAM ViT-B segmentor,
# each built from its own config and loaded from its own trained checkpoint
# (put them at the paths below or override them, see docs/inference.md).
# Not trainable as a whole: train the two parts with their configs.
import mmengine.config as _mmc  # reads the two parts' model configs

_base_ = [
    './_base_/datasets/pannuke.py', './_base_/models/promptnucseg.py',
    './_base_/default_runtime.py'
]

model = dict(
    prompter=_mmc.Config.fromfile(
        '{{ fileDirname }}/prompter_pannuke.py').model,
    segmentor=_mmc.Config.fromfile(
        '{{ fileDirname }}/_base_/models/segmentor_sam-b.py').model,
    prompter_checkpoint='checkpoints/promptnucseg/prompter_pannuke.pth',
    segmentor_checkpoint='checkpoints/promptnucseg/'
    'segmentor_sam-b_pannuke.pth',
    test_cfg=dict(nms_iou_thr=0.5))

# Test only: bPQ and mPQ (PanNuke protocol, per tissue), per-class PQ, AJI.
train_dataloader = None
train_cfg = None
optim_wrapper = None
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
val_evaluator = dict(_delete_=True, type='NucleusInstanceMetric')
test_evaluator = val_evaluator
