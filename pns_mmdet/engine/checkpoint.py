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
from typing import Callable, Iterable, Mapping, Optional, Union

import torch
from mmengine.runner.checkpoint import CheckpointLoader
from torch import Tensor, nn

__all__ = [
    'load_local_checkpoint', 'load_part_checkpoint', 'preview_keys',
    'register_trusted_local_loader', 'state_dict_mismatch',
    'without_pretrained'
]


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


def preview_keys(keys: Iterable[str], limit: int = 8) -> str:
    """The first ``limit`` of ``keys`` (sorted), and how many more."""
    keys = sorted(keys)
    more = f' ... (+{len(keys) - limit} more)' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def state_dict_mismatch(expected: Mapping[str, Tensor],
                        provided: Mapping[str, Tensor]) -> str:
    """Describe how ``provided`` fails to fill ``expected`` exactly.

    Returns:
        str: ``''`` when both have the same keys and shapes, else
        ``'missing keys: ...; unexpected keys: ...; shape mismatches: ...'``
        (only the parts that apply).
    """
    missing = set(expected) - set(provided)
    unexpected = set(provided) - set(expected)
    mismatched = [
        f'{k} (file {tuple(provided[k].shape)} vs model '
        f'{tuple(expected[k].shape)})'
        for k in set(expected) & set(provided)
        if hasattr(provided[k], 'shape')
        and provided[k].shape != expected[k].shape
    ]
    return '; '.join(f'{name}: {preview_keys(keys)}'
                     for name, keys in (('missing keys', missing),
                                        ('unexpected keys', unexpected),
                                        ('shape mismatches', mismatched))
                     if keys)


def without_pretrained(cfg):
    """Copy of a model config with every ``*checkpoint`` and ``init_cfg``
    entry set to None."""
    if isinstance(cfg, dict):
        return type(cfg)({
            k: None if (k == 'init_cfg' or k.endswith('checkpoint')) else
            without_pretrained(v)
            for k, v in cfg.items()
        })
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(without_pretrained(v) for v in cfg)
    return cfg


def load_part_checkpoint(module: nn.Module, checkpoint: str, field: str,
                         prefix: str) -> None:
    """Strictly load a trained sub-model checkpoint (CPU first).

    Accepts a checkpoint written by mmengine (``state_dict`` inside; with
    EMAHook it already holds the averaged weights), a bare state dict, or a
    whole ``PromptNucSeg`` checkpoint (keys under ``prefix``).

    Args:
        module (nn.Module): The prompter or segmentor.
        checkpoint (str): Path of the file.
        field (str): Config field name, for error messages.
        prefix (str): Key prefix of this part in a PromptNucSeg checkpoint
            (``'prompter.'`` or ``'segmentor.'``).

    Raises:
        FileNotFoundError: If the file does not exist.
        RuntimeError: If keys are missing or unexpected, or shapes differ.
    """
    if not osp.isfile(osp.expanduser(checkpoint)):
        raise FileNotFoundError(
            f'{field}: checkpoint file "{checkpoint}" does not exist. Train '
            f'the part with tools/train.py and point {field} at its .pth, or '
            'set it to None for random weights')
    ckpt = load_local_checkpoint(checkpoint, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise RuntimeError(f'{field}: "{checkpoint}" holds no state dict')
    if state and all(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items()}
    own = module.state_dict()
    report = state_dict_mismatch(own, state)
    if report:
        raise RuntimeError(
            f'{field}: "{checkpoint}" does not match the '
            f'{type(module).__name__} built from the config; {report}. Was '
            'it trained with a different config?')
    module.load_state_dict(state, strict=True)
