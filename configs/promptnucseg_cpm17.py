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

# Test only (tools/test.py on the test split): AJI and PQ (means over
# images). No validation: the dataset has no val split upstream.
train_dataloader = None
train_cfg = None
optim_wrapper = None
val_dataloader = None
val_cfg = None
val_evaluator = None
test_cfg = dict(type='TestLoop')
test_evaluator = dict(_delete_=True, type='NucleusInstanceMetric')
