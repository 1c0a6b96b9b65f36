"""bf16 training on CPU: the wrapper, the --amp choice, the loss curve."""
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.optim import build_optim_wrapper
from torch import nn

from pns_mmdet.engine import AutocastOptimWrapper, amp_optim_wrapper


class Regressor(nn.Module):

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(),
                                 nn.Linear(32, 1))

    def forward(self, x):
        return self.net(x)


def train(dtype, steps=60):
    torch.manual_seed(0)
    model = Regressor()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 8, generator=g)
    y = x[:, :1] * 2 - x[:, 1:2]
    wrapper = build_optim_wrapper(model, ConfigDict(
        type='AutocastOptimWrapper', dtype=dtype,
        optimizer=dict(type='Adam', lr=1e-2)))
    losses, dtypes = [], set()
    for _ in range(steps):
        with wrapper.optim_context(model):
            out = model(x)
            dtypes.add(out.dtype)
            loss = ((out.float() - y)**2).mean()
        wrapper.update_params(loss)
        losses.append(loss.item())
    return losses, dtypes


def test_bf16_forward_and_loss_curve_like_fp32():
    fp32, dt32 = train(None)
    bf16, dt16 = train('bfloat16')
    assert dt32 == {torch.float32} and dt16 == {torch.bfloat16}
    # Parameters stay float32; the curves agree within bf16 noise.
    assert bf16[-1] < 0.1 * bf16[0]
    assert abs(bf16[-1] - fp32[-1]) < 0.05 * fp32[0]


def test_auto_is_fp32_where_bf16_is_not_native(monkeypatch):
    import pns_mmdet.utils.autocast as autocast
    monkeypatch.setattr(autocast, 'native_bfloat16', lambda device: False)
    _, dtypes = train('auto', steps=2)
    assert dtypes == {torch.float32}
    monkeypatch.setattr(autocast, 'native_bfloat16', lambda device: True)
    _, dtypes = train('auto', steps=2)
    assert dtypes == {torch.bfloat16}


def test_amp_flag_choice_and_bad_dtype():
    cpu = amp_optim_wrapper(ConfigDict(type='OptimWrapper'), 'cpu')
    assert cpu.type == 'AutocastOptimWrapper' and cpu.dtype == 'auto'
    gpu = amp_optim_wrapper(ConfigDict(type='OptimWrapper'), 'cuda')
    assert gpu.type == 'AmpOptimWrapper' and gpu.loss_scale == 'dynamic'
    kept = amp_optim_wrapper(ConfigDict(type='AutocastOptimWrapper',
                                        dtype='bfloat16'), 'cuda')
    assert kept.type == 'AutocastOptimWrapper'
    opt = torch.optim.SGD(Regressor().parameters(), lr=0.1)
    with pytest.raises(ValueError, match='float16 needs loss scaling'):
        AutocastOptimWrapper(dtype='float16', optimizer=opt)
    with pytest.raises(ValueError, match='optim_wrapper.dtype'):
        AutocastOptimWrapper(dtype='int8', optimizer=opt)
