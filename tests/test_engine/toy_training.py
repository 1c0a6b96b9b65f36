"""A toy model, data set and fault-injection hook for runner-level tests.

Imported by the tests in this folder and, through ``custom_imports``, by the
training subprocesses they start (``PYTHONPATH`` includes this folder). The
model uses dropout and the data set random noise (drawn in the main process)
so that resuming is only exact when the random streams are restored too.
"""
import os
import time

import numpy as np
import torch
import torch.nn as nn
from mmdet.registry import DATASETS, HOOKS, METRICS, MODELS
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from torch.utils.data import Dataset


@MODELS.register_module()
class ToyDropoutRegressor(BaseModel):

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 8)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(8, 1)

    def forward(self, inputs, targets, mode='tensor'):
        x = torch.stack(inputs)
        y = self.out(self.drop(torch.relu(self.linear(x))))
        if mode == 'loss':
            return dict(loss=((y - torch.stack(targets))**2).mean())
        if mode == 'predict':
            return [dict(pred=v) for v in y]
        return y


@DATASETS.register_module()
class ToyNoisyDataset(Dataset):

    def __init__(self, length: int = 16) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        x = np.array([index, 1.0, index % 3, 2.0], np.float32)
        x = x + np.random.normal(0, 0.1, 4).astype(np.float32)  # 'augment'
        return dict(inputs=torch.from_numpy(x),
                    targets=torch.tensor([float(index) / 4]))


@METRICS.register_module()
class ToyMetric(BaseMetric):

    def process(self, data_batch, data_samples) -> None:
        self.results.append(float(np.random.rand()))  # consumes randomness

    def compute_metrics(self, results) -> dict:
        return dict(toy=float(np.mean(results)))


@HOOKS.register_module()
class StallAtIterHook(Hook):
    """Write ``PNS_TOY_READY`` and sleep when iteration ``PNS_TOY_STALL_AT``
    is done (the test then SIGKILLs the process mid-epoch)."""

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        stall_at = int(os.environ.get('PNS_TOY_STALL_AT', '0'))
        if stall_at and runner.iter + 1 == stall_at:
            with open(os.environ['PNS_TOY_READY'], 'w') as f:
                f.write(str(runner.iter + 1))
            time.sleep(600)


def toy_config(work_dir: str, max_epochs: int = 3, **hook_kwargs) -> dict:
    """Epoch-based toy run: 16 samples, batch 2 (8 iterations per epoch),
    validation every epoch, a crash-safe checkpoint every epoch."""
    loader = dict(batch_size=2, num_workers=0,
                  dataset=dict(type='ToyNoisyDataset'))
    return dict(
        model=dict(type='ToyDropoutRegressor'),
        work_dir=work_dir,
        train_dataloader=dict(
            loader, sampler=dict(type='DefaultSampler', shuffle=True)),
        val_dataloader=dict(
            loader, sampler=dict(type='DefaultSampler', shuffle=False)),
        val_evaluator=dict(type='ToyMetric'),
        val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01,
                                          momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs,
                       val_interval=1),
        default_hooks=dict(
            checkpoint=dict(type='CrashSafeCheckpointHook', interval=1,
                            **hook_kwargs),
            logger=dict(type='LoggerHook', interval=4)),
        custom_hooks=[dict(type='StallAtIterHook')],
        custom_imports=dict(imports=['pns_mmdet', 'toy_training']),
        randomness=dict(seed=7),
        default_scope='mmdet',
        env_cfg=dict(dist_cfg=dict(backend='gloo')))
