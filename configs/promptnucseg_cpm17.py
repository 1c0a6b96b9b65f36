# PromptNucSeg end to end on CPM-17 (500 / 600 px tiles): the prompter of
# prompter_cpm17.py on the whole image, SAM ViT-B on 256 tiles with overlap
# 64 (9 tiles), box NMS IoU 0.5.
import mmengine.config as _mmc  # reads the two parts' model configs

_base_ = [
    './_base_/datasets/cpm17.py', './_base_/models/promptnucseg.py',
    './_base_/default_runtime.py'
]

model = dict(
    prompter=_mmc.Config.fromfile('{{ fileDirname }}/prompter_cpm17.py').model,
    segmentor=_mmc.Config.fromfile(
        '{{ fileDirname }}/_base_/models/segmentor_sam-b.py').model,
    prompter_checkpoint='checkpoints/promptnucseg/prompter_cpm17.pth',
    segmentor_checkpoint='checkpoints/promptnucseg/segmentor_sam-b_cpm17.pth',
    test_cfg=dict(nms_iou_thr=0.5))

# Test only: AJI and PQ (means over images).
train_dataloader = None
train_cfg = None
optim_wrapper = None
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
val_evaluator = dict(_delete_=True, type='NucleusInstanceMetric')
test_evaluator = val_evaluator
