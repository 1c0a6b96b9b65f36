"""Checkpoints that survive a kill at any moment, and resume identically.

mmengine 0.10.7 saves a checkpoint as ``CheckpointHook`` ->
``Runner.save_checkpoint`` -> ``mmengine.runner.checkpoint.save_checkpoint``
-> ``LocalBackend.put``, which opens the final file name and writes into it;
then the hook rewrites ``<work_dir>/last_checkpoint`` in place, after having
removed the oldest checkpoint (``max_keep_ckpts``). A kill (OOM killer,
pre-empted node) or a full disk in between leaves a truncated ``.pth``, an
empty pointer, or a pointer to a file already deleted, and ``--resume`` then
fails.

:class:`CrashSafeCheckpointHook` is a drop-in ``CheckpointHook`` (same
arguments) that

- writes checkpoints through :class:`AtomicLocalBackend` (the registered
  file backend ``'pns_atomic_local'``: temporary file, fsync, rename), so a
  file under a checkpoint's name is always complete;
- writes ``last_checkpoint`` the same way, only after the new checkpoint is
  complete, and removes the checkpoints beyond ``max_keep_ckpts`` only
  after that;
- reseeds the random generators (Python, numpy, torch) from
  ``(seed, iteration)`` at the start of every epoch and after every
  iteration (``reseed_per_iter=True``), so the random draws of iteration
  ``k`` (data augmentation in the main process, random prompts, dropout) do
  not depend on what happened before the last checkpoint. A run resumed
  from a checkpoint therefore continues exactly like the uninterrupted run
  with the same seed (tested in ``tests/test_engine``). mmengine itself
  saves no generator state, and validation between epochs consumes random
  numbers, so without this a resumed run diverges.

``configs/_base_/default_runtime.py`` selects it for every config
(``default_hooks.checkpoint.type``). Remote ``out_dir`` (``s3://`` ...) and
user-given ``backend_args`` keep mmengine's backends.
"""
import os.path as osp
import random
from typing import Optional

import numpy as np
import torch
from mmdet.registry import HOOKS
from mmengine.dist import get_rank, is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.utils import mkdir_or_exist

from ..utils import atomic_write

__all__ = ['ATOMIC_BACKEND', 'AtomicLocalBackend', 'CrashSafeCheckpointHook']

#: Name of the crash-safe local file backend in mmengine's fileio registry.
ATOMIC_BACKEND = 'pns_atomic_local'


class AtomicLocalBackend(LocalBackend):
    """mmengine's local backend whose writes are atomic (temporary name,
    fsync, rename; see :func:`pns_mmdet.utils.atomic_write`)."""

    def put(self, obj: bytes, filepath) -> None:
        filepath = str(filepath)
        folder = osp.dirname(filepath)
        if folder:
            mkdir_or_exist(folder)
        with atomic_write(filepath, 'wb') as f:
            f.write(obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend)


def step_seed(seed: int, step: int) -> int:
    """Seed of the random draws of training iteration ``step``."""
    return (int(seed) * 1_000_003 + int(step)) % (2**32)


def reseed_all(seed: int) -> None:
    """Seed Python's, numpy's and torch's (all devices) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


@HOOKS.register_module()
class CrashSafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with atomic writes and resumable randomness.

    Args:
        reseed_per_iter (bool): Reseed the generators from
            ``(seed, iteration)`` before every epoch and after every
            iteration so that resumed runs continue identically. Defaults
            to True.
        **kwargs: Everything ``mmengine.hooks.CheckpointHook`` takes.
    """

    def __init__(self, *args, reseed_per_iter: bool = True,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reseed_per_iter = reseed_per_iter

    def before_train(self, runner) -> None:
        out_dir = self.out_dir if self.out_dir is not None else \
            runner.work_dir
        if (self.backend_args is None and self.file_client_args is None
                and '://' not in str(out_dir)):
            self.backend_args = dict(backend=ATOMIC_BACKEND)
        super().before_train(runner)

    # Randomness --------------------------------------------------------
    def _reseed(self, runner, step: int) -> None:
        if not self.reseed_per_iter or runner.seed is None:
            return
        seed = runner.seed
        if runner._randomness_cfg.get('diff_rank_seed', False):
            seed += get_rank()
        reseed_all(step_seed(seed, step))

    def before_train_epoch(self, runner) -> None:
        super().before_train_epoch(runner)
        self._reseed(runner, runner.iter)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        # runner.iter is incremented after the hooks: the next iteration is
        # runner.iter + 1.
        self._reseed(runner, runner.iter + 1)

    # Saving ------------------------------------------------------------
    def _save_checkpoint_with_step(self, runner, step: int,
                                   meta: Optional[dict]) -> None:
        """As mmengine's, but: write the new checkpoint (atomically), then
        the ``last_checkpoint`` pointer (atomically), and only then remove
        the checkpoints beyond ``max_keep_ckpts``."""
        stale = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                stale.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        # Sharded (model-parallel) saves involve every rank; only the main
        # process keeps the pointer and the clean-up.
        if not is_main_process():
            return
        with atomic_write(osp.join(runner.work_dir, 'last_checkpoint'),
                          'w') as f:
            f.write(self.last_ckpt)
        for old in stale:
            path = self.file_backend.join_path(self.out_dir,
                                               self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                # checkpoints saved by deepspeed are directories
                self.file_backend.rmtree(path)
