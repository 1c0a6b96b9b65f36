# CPU recipe, end to end: the TinyViT prompter of prompter_tinyvit_kumar.py
# and the fine-tuned LiteMedSAM segmentor of segmentor_litemedsam_kumar.py,
# each trained by its own config in this folder (README "Train on your own
# data on a CPU"; `make kumar-cpu` runs all of it). Tested on the 7
# validation tiles (the test loop reads the recipe's val split).
import mmengine.config as _mmc  # reads the two parts' model configs

_base_ = [
    '../_base_/datasets/kumar_cpu.py', '../_base_/models/promptnucseg.py',
    '../_base_/default_runtime.py'
]

model = dict(
    prompter=_mmc.Config.fromfile(
        '{{ fileDirname }}/prompter_tinyvit_kumar.py').model,
    segmentor=_mmc.Config.fromfile(
        '{{ fileDirname }}/segmentor_litemedsam_kumar.py').model,
    prompter_checkpoint='work_dirs/kumar_cpu/prompter.pth',
    segmentor_checkpoint='work_dirs/kumar_cpu/segmentor.pth',
    test_cfg=dict(nms_iou_thr=0.3))

train_dataloader = None
train_cfg = None
optim_wrapper = None
val_dataloader = None
val_cfg = None
val_evaluator = None
test_cfg = dict(type='TestLoop')
# PQ/AJI of the instances and P/R/F1 of their points (12 px), so it shows
# which half limits accuracy.
test_evaluator = [
    dict(type='NucleusInstanceMetric'),
    dict(type='PointDetectionMetric', radius=12.0)
]
