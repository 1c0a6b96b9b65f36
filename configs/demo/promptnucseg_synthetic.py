# PromptNucSeg end to end on the synthetic tiles (the `make demo` model):
# the small demo prompter and the LiteMedSAM demo segmentor, each trained
# with its own config by tools/demo.py, which copies their final weights to
# the two checkpoint paths below.
import mmengine.config as _mmc  # reads the two parts' model configs

_base_ = [
    '../_base_/datasets/synthetic.py', '../_base_/models/promptnucseg.py',
    '../_base_/default_runtime.py'
]

model = dict(
    prompter=_mmc.Config.fromfile(
        '{{ fileDirname }}/prompter_synthetic.py').model,
    segmentor=_mmc.Config.fromfile(
        '{{ fileDirname }}/segmentor_synthetic.py').model,
    prompter_checkpoint='work_dirs/demo/prompter.pth',
    segmentor_checkpoint='work_dirs/demo/segmentor.pth',
    test_cfg=dict(nms_iou_thr=0.5))

# Test only: bPQ, mPQ, per-class PQ, AJI, PQ on the synthetic test split.
train_dataloader = None
train_cfg = None
optim_wrapper = None
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
val_dataloader = dict(num_workers=0, persistent_workers=False)
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='NucleusInstanceMetric')
test_evaluator = val_evaluator
