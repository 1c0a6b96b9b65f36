"""Small project-wide helpers (no model or dataset imports)."""
from .atomic import atomic_write, check_writable_dir
from .config import ConfigFileError, load_config

__all__ = [
    'ConfigFileError', 'atomic_write', 'check_writable_dir', 'load_config'
]
