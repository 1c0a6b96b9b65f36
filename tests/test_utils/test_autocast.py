import contextlib

import pytest
import torch

from pns_mmdet.utils.autocast import (autocast_context,
                                             check_autocast_dtype,
                                             native_bfloat16,
                                             resolve_autocast_dtype)

CPU = torch.device('cpu')


@pytest.mark.parametrize('name, dtype', [(None, None), ('fp32', None),
                                         ('float32', None),
                                         ('bf16', torch.bfloat16),
                                         ('bfloat16', torch.bfloat16),
                                         ('fp16', torch.float16)])
def test_explicit_names_are_honoured(name, dtype):
    assert resolve_autocast_dtype(name, CPU) is dtype


def test_auto_is_bfloat16_only_where_native(monkeypatch):
    import pns_mmdet.utils.autocast as autocast
    monkeypatch.setattr(autocast, 'native_bfloat16', lambda device: True)
    assert resolve_autocast_dtype('auto', CPU) is torch.bfloat16
    monkeypatch.setattr(autocast, 'native_bfloat16', lambda device: False)
    assert resolve_autocast_dtype('auto', CPU) is None
    assert isinstance(autocast_context('auto', CPU), contextlib.nullcontext)


def test_native_bfloat16_matches_mkldnn_on_cpu():
    assert native_bfloat16(CPU) == bool(
        torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_context_enables_autocast():
    with autocast_context('bf16', CPU):
        out = torch.ones(2, 2) @ torch.ones(2, 2)
    assert out.dtype is torch.bfloat16
    with autocast_context(None, CPU):
        out = torch.ones(2, 2) @ torch.ones(2, 2)
    assert out.dtype is torch.float32


def test_unknown_name_names_the_field():
    with pytest.raises(ValueError, match=r'test_cfg\.autocast_dtype.*half'):
        check_autocast_dtype('half', 'test_cfg.autocast_dtype')
