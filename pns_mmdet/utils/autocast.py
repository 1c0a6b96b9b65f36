"""Mixed-precision settings shared by the segmentor and the end-to-end model.

Configs name the autocast dtype as a string (``test_cfg.autocast_dtype``).
``'auto'`` picks bfloat16 only where the hardware runs it natively: on a CPU
without AVX-512 BF16 / AMX, bfloat16 matrix products are emulated and tens
of times slower than float32, so ``'auto'`` stays in float32 there.
"""
import contextlib
from typing import ContextManager, Optional

import torch

__all__ = [
    'AUTOCAST_DTYPES', 'autocast_context', 'check_autocast_dtype',
    'native_bfloat16', 'resolve_autocast_dtype'
]

AUTOCAST_DTYPES = {
    None: None,
    'float32': None,
    'fp32': None,
    'bfloat16': torch.bfloat16,
    'bf16': torch.bfloat16,
    'float16': torch.float16,
    'fp16': torch.float16,
    'auto': 'auto',
}


def check_autocast_dtype(name: Optional[str], field: str) -> None:
    """Raise a ValueError naming ``field`` if ``name`` is not a known
    autocast dtype name."""
    if name not in AUTOCAST_DTYPES:
        raise ValueError(
            f'{field} must be one of '
            f'{sorted(k for k in AUTOCAST_DTYPES if k)} or None, got '
            f'{name!r}')


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matrix products natively."""
    if device.type == 'cuda':
        return torch.cuda.is_bf16_supported()
    if device.type == 'cpu':
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def resolve_autocast_dtype(name: Optional[str],
                           device: torch.device) -> Optional[torch.dtype]:
    """The torch dtype for a configured name on ``device`` (None: float32).

    Args:
        name (str, optional): A key of ``AUTOCAST_DTYPES``.
        device (torch.device): Where the forward pass runs.
    """
    check_autocast_dtype(name, 'autocast_dtype')
    dtype = AUTOCAST_DTYPES[name]
    if dtype == 'auto':
        return torch.bfloat16 if native_bfloat16(device) else None
    return dtype


def autocast_context(name: Optional[str],
                     device: torch.device) -> ContextManager:
    """``torch.autocast`` for a configured dtype name, or a no-op."""
    dtype = resolve_autocast_dtype(name, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
