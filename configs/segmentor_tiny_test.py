# A tiny random SAM-layout segmentor for tests and smoke runs: the code paths
# of SAM ViT-B (windowed + global attention with relative positions, two-way
# decoder, 4x upscaling) at 128 px with 8-px patches (16 x 16 tokens, as
# ViT-B at 256 px), ~0.4 M parameters. Trains on random 128 crops of the
# synthetic tiles; tests tile the 256-px images.
_base_ = [
    './_base_/datasets/synthetic.py', './_base_/models/segmentor_sam-b.py',
    './_base_/schedules/segmentor_adamw_200e.py', './_base_/default_runtime.py'
]

img_size = 128
embed_dim = 64
model = dict(
    img_size=img_size,
    checkpoint=None,
    data_preprocessor=dict(pad_size_divisor=img_size),
    image_encoder=dict(
        img_size=img_size, embed_dim=embed_dim, depth=2, num_heads=4,
        global_attn_indexes=[1], patch_size=8, window_size=8,
        out_chans=embed_dim),
    prompt_encoder=dict(
        embed_dim=embed_dim, image_embedding_size=(16, 16),
        input_image_size=(img_size, img_size)),
    mask_decoder=dict(
        transformer_dim=embed_dim, transformer_mlp_dim=128,
        transformer_num_heads=4, iou_head_hidden_dim=64),
    train_cfg=dict(num_prompts_per_img=12),
    test_cfg=dict(chunk_size=64, tile_overlap=32))

train_pipeline = _base_.load_steps + [
    dict(type='RandomCrop', crop_size=(img_size, img_size),
         allow_negative_crop=True, recompute_bbox=True),
    _base_.flip_step,
] + _base_.pack_steps
train_dataloader = dict(
    batch_size=3, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False)
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='NucleusInstanceMetric')
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=2e-3))
max_epochs = 100
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[75], gamma=0.1)
]
