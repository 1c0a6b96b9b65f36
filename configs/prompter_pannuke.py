# PromptNucSeg prompter on PanNuke (ConvNeXt-S, anchor stride 8, P2-P4,
# beta 0.4, NMS 12 px, no mask-aided filtering), fold order 123: train on
# fold 1, keep the best class F1 on fold 2, test on fold 3. Other orders:
# prompter_pannuke_fold213.py, prompter_pannuke_fold321.py.
_base_ = [
    './_base_/models/prompter_convnext-s_fpn.py',
    './_base_/datasets/pannuke.py',
    './_base_/schedules/prompter_adamw_200e.py',
    './_base_/default_runtime.py',
]

default_hooks = dict(
    checkpoint=dict(
        type='CrashSafeCheckpointHook',
        interval=10,
        max_keep_ckpts=2,
        save_best='points/cls_f1',
        rule='greater'))
