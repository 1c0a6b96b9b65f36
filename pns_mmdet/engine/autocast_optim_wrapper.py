"""Mixed-precision training that also runs on CPUs (bf16 autocast).

mmengine's ``AmpOptimWrapper`` is GPU-only (it refuses a CPU model) and
built for float16 with loss scaling. bfloat16 needs no loss scaling, and
on CPUs with AMX or AVX-512 BF16 its matrix products run several times
faster than float32. :class:`AutocastOptimWrapper` is mmengine's plain
``OptimWrapper`` whose forward context adds ``torch.autocast``;
:func:`amp_optim_wrapper` is what ``tools/train.py --amp`` applies.
"""
from contextlib import contextmanager
from typing import Optional

import torch
from mmengine.config import ConfigDict
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn

from ..utils.autocast import (check_autocast_dtype,
                                     resolve_autocast_dtype)

__all__ = ['AutocastOptimWrapper', 'amp_optim_wrapper']


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` running the forward pass under ``torch.autocast``.

    Args:
        dtype (str): An autocast dtype name (``utils/autocast.py``):
            'bfloat16', or 'auto' (bfloat16 where the device runs it
            natively, float32 elsewhere: emulated bfloat16 on an AVX2-only
            CPU is tens of times slower). float16 needs loss scaling: use
            mmengine's ``AmpOptimWrapper`` on GPUs for it.
        **kwargs: ``OptimWrapper`` arguments (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).
    """

    def __init__(self, dtype: str = 'auto', **kwargs) -> None:
        check_autocast_dtype(dtype, 'optim_wrapper.dtype')
        if dtype in ('float16', 'fp16'):
            raise ValueError(
                "AutocastOptimWrapper: float16 needs loss scaling; use "
                "optim_wrapper.type='AmpOptimWrapper' (GPU) or dtype="
                "'bfloat16'")
        super().__init__(**kwargs)
        self.dtype = dtype
        self._reported = False

    @contextmanager
    def optim_context(self, model: nn.Module):
        """mmengine's context (gradient accumulation) plus autocast on the
        device of ``model``'s parameters."""
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device('cpu')
        dtype = resolve_autocast_dtype(self.dtype, device)
        if not self._reported:
            self._reported = True
            print_log(
                f'AutocastOptimWrapper: dtype={self.dtype!r} on '
                f'{device.type}: training forward passes in '
                f'{dtype or torch.float32}', logger='current')
        with super().optim_context(model):
            if dtype is None:
                yield
            else:
                with torch.autocast(device_type=device.type, dtype=dtype):
                    yield


def amp_optim_wrapper(optim_wrapper: ConfigDict,
                      device: Optional[str] = None) -> ConfigDict:
    """The optim wrapper config for ``--amp`` on ``device``.

    CUDA: mmengine's ``AmpOptimWrapper`` (float16, dynamic loss scale), as
    mmdet does. CPU: :class:`AutocastOptimWrapper` with ``dtype='auto'``
    (bfloat16 only where native). A config that already names an autocast
    wrapper is kept.

    Args:
        optim_wrapper (ConfigDict): The config's ``optim_wrapper``
            (modified in place).
        device (str, optional): 'cuda' or 'cpu'; default: CUDA when
            available.

    Returns:
        ConfigDict: ``optim_wrapper``.
    """
    if optim_wrapper.get('type') in ('AmpOptimWrapper',
                                     'AutocastOptimWrapper'):
        return optim_wrapper
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cuda':
        optim_wrapper.type = 'AmpOptimWrapper'
        optim_wrapper.setdefault('loss_scale', 'dynamic')
    else:
        optim_wrapper.type = 'AutocastOptimWrapper'
        optim_wrapper.setdefault('dtype', 'auto')
    return optim_wrapper
