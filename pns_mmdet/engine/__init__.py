from .autocast_optim_wrapper import AutocastOptimWrapper, amp_optim_wrapper
from .checkpoint import (CheckpointError, TrustedCheckpointWarning,
                         UntrustedCheckpointError,
                         add_trust_checkpoint_argument, is_trusted_checkpoint,
                         load_checkpoint_file, load_local_checkpoint,
                         load_part_checkpoint, preview_keys,
                         register_safe_local_loader, state_dict_mismatch,
                         trust_checkpoints, without_pretrained)
from .crash_safe_checkpoint_hook import (AtomicLocalBackend,
                                         CrashSafeCheckpointHook)
from .distributed import cleanup_distributed, dist_backend, setup_distributed

# mmengine loads local checkpoint paths with the safe loader (see
# engine/checkpoint.py): weights-only plus a short allowlist.
register_safe_local_loader()

__all__ = [
    'AutocastOptimWrapper', 'amp_optim_wrapper', 'AtomicLocalBackend',
    'CheckpointError', 'CrashSafeCheckpointHook',
    'TrustedCheckpointWarning', 'UntrustedCheckpointError',
    'add_trust_checkpoint_argument', 'is_trusted_checkpoint',
    'load_checkpoint_file', 'load_local_checkpoint',
    'load_part_checkpoint', 'preview_keys', 'register_safe_local_loader',
    'state_dict_mismatch', 'trust_checkpoints', 'without_pretrained',
    'cleanup_distributed', 'dist_backend', 'setup_distributed'
]
