"""Resuming mmengine checkpoints under torch >= 2.6 (weights_only default)."""
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader
from torch.utils.data import Dataset

import pns_mmdet  # noqa: F401  (registers the trusted local loader)
from pns_mmdet.engine import load_local_checkpoint


class ToyRegressor(BaseModel):

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, targets, mode='tensor'):
        inputs = torch.stack(inputs)
        targets = torch.stack(targets)
        outputs = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=((outputs - targets)**2).mean())
        return outputs


class ToyDataset(Dataset):

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict:
        x = torch.tensor([float(index), 1.0])
        return dict(inputs=x, targets=x.sum(0, keepdim=True))


def build_runner(work_dir: str, max_iters: int, resume: bool) -> Runner:
    return Runner(
        model=ToyRegressor(),
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', interval=2, by_epoch=False)),
        resume=resume,
        randomness=dict(seed=0),
        default_scope='mmengine',
        experiment_name=f'toy_{max_iters}_{resume}')


def test_plain_weights_only_load_fails_on_runner_checkpoint(tmp_path):
    """The problem the loader fixes: torch's default refuses the file."""
    runner = build_runner(str(tmp_path), max_iters=2, resume=False)
    runner.train()
    ckpt = osp.join(str(tmp_path), 'iter_2.pth')
    with pytest.raises(Exception, match='weights_only'):
        torch.load(ckpt, weights_only=True)
    state = load_local_checkpoint(ckpt, map_location='cpu')
    assert state['meta']['iter'] == 2
    assert 'message_hub' in state and 'optimizer' in state


def test_train_resume_train(tmp_path):
    work_dir = str(tmp_path)
    first = build_runner(work_dir, max_iters=2, resume=False)
    first.train()
    weights_after_2 = first.model.linear.weight.detach().clone()
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))

    second = build_runner(work_dir, max_iters=4, resume=True)
    second.train()
    assert second.iter == 4
    assert osp.isfile(osp.join(work_dir, 'iter_4.pth'))
    # Resumed from iteration 2 (not from scratch): the optimizer state and
    # weights were restored, then two more steps changed the weights.
    resumed = load_local_checkpoint(
        osp.join(work_dir, 'iter_4.pth'), map_location='cpu')
    assert resumed['meta']['iter'] == 4
    assert not torch.equal(resumed['state_dict']['linear.weight'],
                           weights_after_2)

    # And it matches an uninterrupted 4-iteration run exactly.
    straight = build_runner(
        str(tmp_path / 'straight'), max_iters=4, resume=False)
    straight.train()
    torch.testing.assert_close(second.model.linear.weight,
                               straight.model.linear.weight)


def test_local_scheme_uses_trusted_loader():
    loader = CheckpointLoader._get_checkpoint_loader('some/dir/model.pth')
    assert loader.__module__ == 'pns_mmdet.engine.checkpoint'


def test_missing_checkpoint_names_the_file(tmp_path):
    missing = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_local_checkpoint(missing)
