# Ablation of the CPU recipe: promptnucseg_tinyvit_kumar.py with the
# ResNet-18 prompter of prompter_r18_kumar.py (trained from random weights
# with the same crops and budget).
import mmengine.config as _mmc  # reads the prompter's model config

_base_ = ['./promptnucseg_tinyvit_kumar.py']

model = dict(
    prompter=dict(
        _delete_=True,
        **_mmc.Config.fromfile(
            '{{ fileDirname }}/prompter_r18_kumar.py').model),
    prompter_checkpoint='work_dirs/kumar_cpu/prompter_r18.pth')
