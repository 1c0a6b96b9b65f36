"""Local checkpoint loading that works under torch >= 2.6.

torch 2.6 changed ``torch.load`` to ``weights_only=True``. mmengine 0.10.7's
local loader does not pass ``weights_only``, so a checkpoint written by
mmengine itself (it pickles ``message_hub``, numpy scalars and the config)
cannot be loaded back and ``--resume`` fails. Files given to the runner by
path are the user's own (``load_from``, ``resume``, ``init_cfg``): they are
trusted, so they are loaded with ``weights_only=False``. Remote schemes
(``http://``, ``s3://``, ...) keep mmengine's own loaders.
"""
import os.path as osp
from typing import Callable, Optional, Union

import torch
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['load_local_checkpoint', 'register_trusted_local_loader']


def load_local_checkpoint(filename: str,
                          map_location: Optional[Union[str, Callable]] = None
                          ) -> dict:
    """Load a trusted local checkpoint file (full unpickling).

    Args:
        filename (str): Path of the checkpoint file.
        map_location (str | Callable, optional): As in ``torch.load``.

    Returns:
        dict: The loaded checkpoint.

    Raises:
        FileNotFoundError: If ``filename`` does not exist.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file "{filename}" does not exist')
    return torch.load(filename, map_location=map_location, weights_only=False)


def register_trusted_local_loader() -> None:
    """Make mmengine load local paths with :func:`load_local_checkpoint`.

    ``force=True`` is needed because mmengine registers its own loader for the
    empty (local path) prefix; this replaces exactly that one loader.
    """
    CheckpointLoader.register_scheme(
        prefixes='', loader=_mmengine_local_loader, force=True)


def _mmengine_local_loader(filename: str, map_location=None) -> dict:
    return load_local_checkpoint(filename, map_location)
