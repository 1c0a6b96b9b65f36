from .checkpoint import load_local_checkpoint, register_trusted_local_loader

register_trusted_local_loader()

__all__ = ['load_local_checkpoint', 'register_trusted_local_loader']
