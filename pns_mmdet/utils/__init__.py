"""Small project-wide helpers (no model or dataset imports)."""
from .atomic import atomic_write, check_writable_dir

__all__ = ['atomic_write', 'check_writable_dir']
