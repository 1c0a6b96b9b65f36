from .checkpoint import (load_local_checkpoint, load_part_checkpoint,
                         preview_keys, register_trusted_local_loader,
                         state_dict_mismatch, without_pretrained)

register_trusted_local_loader()

__all__ = [
    'load_local_checkpoint', 'load_part_checkpoint', 'preview_keys',
    'register_trusted_local_loader', 'state_dict_mismatch',
    'without_pretrained'
]
