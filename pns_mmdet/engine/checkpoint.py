"""The one loader of checkpoint files: weights-only unless trusted.

A ``.pth`` file is a pickle, and unpickling can run arbitrary code, so a
checkpoint downloaded from the internet must never be fully unpickled just
because a config names it. Every checkpoint this project reads (runner
``load_from`` / ``resume``, ``prompter_checkpoint``,
``segmentor_checkpoint``, SAM / LiteMedSAM weights, the tools) goes through
:func:`load_checkpoint_file`, which calls ``torch.load(weights_only=True)``
with exactly the extra types mmengine 0.10.7 writes into its checkpoints
(:data:`SAFE_GLOBALS`, found by saving real runner checkpoints and listing
what weights-only loading refuses).

A file needing anything else is refused with :class:`UntrustedCheckpointError`
(naming the file, the refused globals and the opt-in). Full unpickling
happens only for files the user names as trusted: ``--trust-checkpoint
PATH`` on the tools, or ``PNS_TRUST_CHECKPOINTS`` (paths separated by
``os.pathsep``; ``1`` trusts every file), and then with a
:class:`TrustedCheckpointWarning`.

mmengine's own local loader cannot read its checkpoints under torch >= 2.6
(it calls ``torch.load`` without an allowlist), so
:func:`register_safe_local_loader` (called once when ``pns_mmdet.engine`` is
imported) replaces the loader mmengine uses for local paths (the empty
prefix) with :func:`load_checkpoint_file`. That replacement only narrows
what can run: it is torch's weights-only default plus the allowlist below.
Remote schemes (``http://``, ``s3://``, ...) keep mmengine's loaders.
"""
import os
import os.path as osp
import pickle
import warnings
from typing import Callable, Iterable, List, Mapping, Optional, Union

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader
from torch import Tensor, nn

__all__ = [
    'CheckpointError', 'SAFE_GLOBALS', 'TRUST_ENV', 'TRUST_HELP',
    'TrustedCheckpointWarning',
    'UntrustedCheckpointError', 'add_trust_checkpoint_argument',
    'is_trusted_checkpoint',
    'load_checkpoint_file', 'load_local_checkpoint', 'load_part_checkpoint',
    'preview_keys', 'register_safe_local_loader', 'state_dict_mismatch',
    'trust_checkpoints', 'without_pretrained'
]

#: Environment variable listing trusted checkpoint files (``os.pathsep``
#: separated), or ``1`` to trust every file.
TRUST_ENV = 'PNS_TRUST_CHECKPOINTS'

# HistoryBuffer pickles its statistics methods as getattr(HistoryBuffer,
# name); only those four lookups are allowed, nothing else through getattr.
_HISTORY_BUFFER_METHODS = ('min', 'max', 'mean', 'current')


def _history_buffer_getattr(obj, name):
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'weights-only loading allows getattr only for HistoryBuffer.'
        f'{{{",".join(_HISTORY_BUFFER_METHODS)}}}, not {obj!r}.{name}')


def _numpy_globals() -> list:
    from numpy._core import multiarray
    numeric = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
               np.uint16, np.uint32, np.uint64, np.float16, np.float32,
               np.float64, np.complex64, np.complex128)
    out = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    out += [type(np.dtype(t)) for t in numeric]
    # Files written under numpy 1.x name the same functions numpy.core.*.
    out += [(multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
            (multiarray.scalar, 'numpy.core.multiarray.scalar')]
    return out


#: What mmengine 0.10.7 checkpoints hold beyond tensors and plain
#: containers: the message hub's ``HistoryBuffer`` (with its statistics
#: methods), numpy arrays, scalars and dtypes of the logged values.
SAFE_GLOBALS: List = [
    HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')
] + _numpy_globals()


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read (the message names the file)."""


class UntrustedCheckpointError(CheckpointError):
    """A checkpoint needs full unpickling and was not named as trusted."""


class TrustedCheckpointWarning(UserWarning):
    """A checkpoint is being fully unpickled because the user trusted it."""


def trust_checkpoints(paths: Optional[Iterable[str]]) -> None:
    """Add files to the trusted list (``PNS_TRUST_CHECKPOINTS``).

    The tools call it for ``--trust-checkpoint PATH``. It goes through the
    environment so that worker processes started later trust them too.
    """
    paths = [osp.abspath(osp.expanduser(p)) for p in (paths or [])]
    if not paths:
        return
    current = [p for p in os.environ.get(TRUST_ENV, '').split(os.pathsep)
               if p]
    os.environ[TRUST_ENV] = os.pathsep.join(current + paths)


#: Help text of ``--trust-checkpoint`` (tools/infer.py repeats it because
#: it parses its arguments before importing the package).
TRUST_HELP = ('fully unpickle this checkpoint file (only for files from a '
              'trusted source: unpickling can run code); repeatable')


def add_trust_checkpoint_argument(parser) -> None:
    """Add the repeatable ``--trust-checkpoint PATH`` option of the tools.

    Its value (``args.trust_checkpoint``, a list of paths or None) goes to
    :func:`trust_checkpoints` before any checkpoint is loaded.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.
    """
    parser.add_argument(
        '--trust-checkpoint', action='append', metavar='PATH',
        help=TRUST_HELP)


def is_trusted_checkpoint(filename: str) -> bool:
    """Whether the user named ``filename`` as trusted (see module doc)."""
    entries = [e for e in os.environ.get(TRUST_ENV, '').split(os.pathsep)
               if e]
    if any(e.lower() in ('1', 'all', 'true', 'yes') for e in entries):
        return True
    target = osp.realpath(osp.expanduser(filename))
    return any(osp.realpath(osp.expanduser(e)) == target for e in entries)


def _refused_globals(filename: str) -> List[str]:
    allowed = {
        g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
        for g in SAFE_GLOBALS
    }
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(
            filename)
    except Exception:  # legacy (non-zip) files cannot be listed
        return []
    return sorted(set(found) - allowed)


def load_checkpoint_file(filename: str,
                         map_location: Optional[Union[str, Callable]] = None
                         ) -> dict:
    """Load a local checkpoint file, weights-only unless trusted.

    Args:
        filename (str): Path of the checkpoint file.
        map_location (str | Callable, optional): As in ``torch.load``.

    Returns:
        The loaded object (a dict for every checkpoint this project uses).

    Raises:
        FileNotFoundError: If ``filename`` is not an existing file.
        UntrustedCheckpointError: If the file needs a global outside
            :data:`SAFE_GLOBALS` and was not named as trusted.
        CheckpointError: If the file is truncated, corrupt or not a
            checkpoint.
    """
    filename = osp.expanduser(str(filename))
    if not osp.isfile(filename):
        what = 'is a directory' if osp.isdir(filename) else 'does not exist'
        raise FileNotFoundError(f'checkpoint file "{filename}" {what}')
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = _refused_globals(filename)
        if refused and is_trusted_checkpoint(filename):
            warnings.warn(
                f'fully unpickling checkpoint "{filename}" (it needs '
                f'{", ".join(refused)}) because it is named as trusted '
                f'(--trust-checkpoint / {TRUST_ENV}); unpickling can run '
                'arbitrary code', TrustedCheckpointWarning, stacklevel=2)
            return _full_load(filename, map_location)
        if refused:
            raise UntrustedCheckpointError(
                f'checkpoint "{filename}" was refused: loading it needs the '
                f'global(s) {", ".join(refused)}, which weights-only loading '
                'does not allow (unpickling can run arbitrary code). If you '
                'trust where the file comes from, pass --trust-checkpoint '
                f'{filename} to the tool or set {TRUST_ENV}={filename} '
                f'({TRUST_ENV}=1 trusts every file)') from None
        # torch's message starts with advice to pass weights_only=False,
        # which is wrong here (nothing was refused): keep only its reason.
        text = str(err)
        reason = ' '.join(
            text.split('WeightsUnpickler error:', 1)[1].split(
                'Check the documentation')[0].split()
        ) if 'WeightsUnpickler error:' in text else _first_line(err)
        raise CheckpointError(
            f'checkpoint "{filename}" cannot be read (corrupt or not a '
            f'checkpoint): {reason[:300]}') from err
    except Exception as err:
        raise CheckpointError(
            f'checkpoint "{filename}" cannot be read (truncated, corrupt or '
            f'not a torch checkpoint): {type(err).__name__}: '
            f'{_first_line(err)}') from err


def _full_load(filename, map_location):
    try:
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    except Exception as err:
        raise CheckpointError(
            f'checkpoint "{filename}" cannot be read: {type(err).__name__}: '
            f'{_first_line(err)}') from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else ''


#: The name this loader had when it always unpickled fully; kept so that
#: existing imports work. It is the safe loader now.
load_local_checkpoint = load_checkpoint_file


def register_safe_local_loader() -> None:
    """Make mmengine load local paths with :func:`load_checkpoint_file`.

    ``force=True`` is needed because mmengine registers its own loader for
    the empty (local path) prefix; this replaces exactly that one loader.
    """
    CheckpointLoader.register_scheme(
        prefixes='', loader=_mmengine_local_loader, force=True)


def _mmengine_local_loader(filename: str, map_location=None) -> dict:
    return load_checkpoint_file(filename, map_location)
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
            'set it to None to keep what the part\'s own config loads')
    ckpt = load_checkpoint_file(checkpoint, map_location='cpu')
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
