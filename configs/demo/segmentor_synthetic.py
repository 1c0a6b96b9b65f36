# LiteMedSAM demo segmentor on the synthetic tiles (CPU, a few minutes):
# the packaged LiteMedSAM weights, image encoder frozen with its embeddings
# cached, so training only updates the mask decoder (prompt encoder frozen
# as always). LiteMedSAM was trained with box prompts; this teaches it the
# point (+ nearest negative) prompts of PromptNucSeg.
_base_ = [
    '../_base_/datasets/synthetic.py',
    '../_base_/models/segmentor_litemedsam.py',
    '../_base_/schedules/segmentor_adamw_200e.py',
    '../_base_/default_runtime.py'
]

model = dict(
    image_encoder=dict(frozen=True),
    # Flips give 4 variants of each of the 16 training tiles: 64 cached
    # embeddings (4 MB each).
    train_cfg=dict(
        num_prompts_per_img=8,
        embedding_cache=dict(type='EmbeddingCache', max_entries=64)))

# Flips only: the cache holds every training input after the first epochs.
train_pipeline = _base_.load_steps + [_base_.flip_step] + _base_.pack_steps
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(num_workers=0, persistent_workers=False)
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='NucleusInstanceMetric')
test_evaluator = val_evaluator

# bfloat16 autocast where the CPU or GPU runs it natively (~1.7x faster
# decoder), float32 elsewhere.
optim_wrapper = dict(type='AutocastOptimWrapper', dtype='auto',
                     optimizer=dict(lr=2e-4))
# 30 epochs (~8 min on 2 CPU cores): the decoder needs them to learn the
# negative prompt (benchmarks/bench_negative_prompts.py, docs/segmentor.md).
max_epochs = 30
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=True, milestones=[24], gamma=0.1)
]
default_hooks = dict(
    checkpoint=dict(type='CrashSafeCheckpointHook', interval=max_epochs),
    logger=dict(type='LoggerHook', interval=4))
