# Runtime shared by every pns_mmdet config: mmdet's scope, hooks and logging,
# plus the plugin import that registers all pns_mmdet components.
_base_ = 'mmdet::_base_/default_runtime.py'

custom_imports = dict(imports=['pns_mmdet'], allow_failed_imports=False)

# Device comes from the environment (CUDA when present, else CPU); override
# with `--cfg-options` if needed.
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # No backend: pns_mmdet.engine.setup_distributed picks NCCL on CUDA and
    # gloo on CPU; set dist_cfg.backend to force one.
    dist_cfg=dict(_delete_=True),
)
# CrashSafeCheckpointHook (pns_mmdet/engine): checkpoints and last_checkpoint
# written atomically, and per-iteration reseeding so that --resume after a
# kill continues like the uninterrupted run. Leaf configs that set their own
# checkpoint hook name this type too.
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CrashSafeCheckpointHook'))
log_processor = dict(type='LogProcessor', window_size=10, by_epoch=True)
