"""Small project-wide helpers (no model or dataset imports)."""
from .atomic import atomic_write, check_writable_dir
from .autocast import (autocast_context, check_autocast_dtype,
                       native_bfloat16, resolve_autocast_dtype)
from .config import ConfigFileError, load_config

__all__ = [
    'ConfigFileError', 'atomic_write', 'check_writable_dir', 'load_config',
    'autocast_context', 'check_autocast_dtype', 'native_bfloat16',
    'resolve_autocast_dtype'
]
