# PromptNucSeg end to end on Kumar (1000 x 1000): the prompter of
# prompter_kumar.py (stride 16, mask-aided filtering, NMS 11 px) on the
# whole image, SAM ViT-B on 256 tiles with overlap 64, box NMS IoU 0.3.
import mmengine.config as _mmc  # reads the two parts' model configs

_base_ = [
    './_base_/datasets/kumar.py', './_base_/models/promptnucseg.py',
    './_base_/default_runtime.py'
]

model = dict(
    prompter=_mmc.Config.fromfile('{{ fileDirname }}/prompter_kumar.py').model,
    segmentor=_mmc.Config.fromfile(
        '{{ fileDirname }}/_base_/models/segmentor_sam-b.py').model,
    prompter_checkpoint='checkpoints/promptnucseg/prompter_kumar.pth',
    segmentor_checkpoint='checkpoints/promptnucseg/segmentor_sam-b_kumar.pth',
    test_cfg=dict(nms_iou_thr=0.3))

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
