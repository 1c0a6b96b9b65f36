"""Distributed training and testing on CPU (gloo) and GPU (NCCL).

mmengine 0.10.7 assumes CUDA when it starts a distributed run: its
``_init_dist_pytorch`` calls ``torch.cuda.set_device`` unconditionally and
its DDP wrapper passes ``device_ids=[LOCAL_RANK]``, so ``--launcher pytorch``
fails at once on a machine without a GPU. :func:`setup_distributed` is the
smallest workaround and the one place that picks the backend:

* it initialises the default process group itself (``env://``, as torchrun
  sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
  ``MASTER_PORT``) before the Runner is built, so the Runner finds it
  initialised and skips its own ``init_dist``;
* backend: ``env_cfg.dist_cfg.backend`` when the config sets one, otherwise
  NCCL when CUDA is available and gloo when not;
* on CPU it sets a ``model_wrapper_cfg`` whose ``device_ids`` is None (what
  ``DistributedDataParallel`` expects for CPU modules).

BatchNorm under DDP normalises with each process's own batch, and the
running statistics of rank 0 are the ones saved (mmengine wraps with
``broadcast_buffers=False``). ``sync_bn='torch'`` in a config synchronises
the statistics across GPUs; PyTorch's SyncBatchNorm runs on GPUs only, so
it is refused on CPU with an explicit error (see docs/distributed.md).
"""
import datetime
import os
import sys
from typing import Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import Config

__all__ = ['dist_backend', 'setup_distributed', 'cleanup_distributed']

_TORCHRUN_VARS = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                  'MASTER_PORT')


def dist_backend(cfg: Config, device: Optional[str] = None) -> str:
    """The process-group backend for ``cfg`` on ``device``.

    Args:
        cfg (Config): Config with an optional ``env_cfg.dist_cfg.backend``.
        device (str, optional): 'cuda' or 'cpu'. Defaults to 'cuda' when
            CUDA is available, else 'cpu'.

    Returns:
        str: The configured backend, else 'nccl' on CUDA and 'gloo' on CPU.

    Raises:
        ValueError: If the config asks for NCCL on a CPU-only process.
    """
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    dist_cfg = (cfg.get('env_cfg') or {}).get('dist_cfg') or {}
    backend = dist_cfg.get('backend')
    if backend is None:
        return 'nccl' if device == 'cuda' else 'gloo'
    if backend == 'nccl' and device != 'cuda':
        raise ValueError(
            "env_cfg.dist_cfg.backend='nccl' needs CUDA, but this process "
            'sees no GPU; remove the entry (gloo is then chosen on CPU) or '
            "set --cfg-options env_cfg.dist_cfg.backend=gloo")
    return backend


def _cpu_model_wrapper(cfg: Config) -> None:
    """DDP wrapper config for CPU modules (``device_ids=None``)."""
    from mmengine.registry import MODEL_WRAPPERS
    from torch.nn.parallel import DistributedDataParallel
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
        return
    wrapper_type = MODEL_WRAPPERS.get(
        wrapper.get('type', 'MMDistributedDataParallel'))
    if isinstance(wrapper_type, type) and issubclass(
            wrapper_type, DistributedDataParallel):
        wrapper.setdefault('device_ids', None)


def setup_distributed(cfg: Config) -> Config:
    """Start the process group of ``cfg.launcher`` before the Runner.

    Call it after the command line is merged into ``cfg`` and before
    ``Runner.from_cfg``. Nothing happens for ``launcher='none'`` or when a
    process group already exists.

    Args:
        cfg (Config): The run's config; ``launcher`` is 'none', 'pytorch',
            'slurm' or 'mpi'. Modified in place (``model_wrapper_cfg`` on
            CPU).

    Returns:
        Config: ``cfg``.

    Raises:
        RuntimeError: If a torchrun variable is missing, or LOCAL_RANK has
            no GPU, or 'slurm'/'mpi' is asked for on CPU.
        ValueError: For ``sync_bn`` on CPU or NCCL without CUDA.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch_dist.is_initialized():
        return cfg
    cuda = torch.cuda.is_available()
    device = 'cuda' if cuda else 'cpu'
    backend = dist_backend(cfg, device)
    if cfg.get('sync_bn') and not cuda:
        raise ValueError(
            f"sync_bn={cfg.sync_bn!r} needs GPUs (PyTorch's SyncBatchNorm "
            'does not run on CPU); remove it (each process then normalises '
            'with its own batch) or use a config without BatchNorm')
    if launcher != 'pytorch':
        if not cuda:
            raise RuntimeError(
                f'--launcher {launcher} is only supported with GPUs; on CPU '
                'start the processes with torchrun and --launcher pytorch '
                '(tools/dist_train.sh, docs/distributed.md)')
        return cfg  # mmengine's own slurm / mpi initialisation
    missing = [v for v in _TORCHRUN_VARS if v not in os.environ]
    if missing:
        raise RuntimeError(
            f'--launcher pytorch expects the variables torchrun sets, but '
            f'{", ".join(missing)} {"is" if len(missing) == 1 else "are"} '
            'not set; start with tools/dist_train.sh / dist_test.sh or '
            'torchrun --nproc_per_node N tools/train.py ... --launcher '
            'pytorch')
    rank = int(os.environ['RANK'])
    world_size = int(os.environ['WORLD_SIZE'])
    local_rank = int(os.environ['LOCAL_RANK'])
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(
                f'LOCAL_RANK {local_rank} but only '
                f'{torch.cuda.device_count()} GPU(s) are visible; start at '
                'most one process per GPU (--nproc_per_node)')
        torch.cuda.set_device(local_rank)
    kwargs = dict((cfg.get('env_cfg') or {}).get('dist_cfg') or {})
    kwargs.pop('backend', None)
    kwargs.pop('init_backend', None)
    timeout = kwargs.pop('timeout', None)
    if timeout is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=timeout)
    torch_dist.init_process_group(
        backend=backend, rank=rank, world_size=world_size, **kwargs)
    if not cuda:
        _cpu_model_wrapper(cfg)
    return cfg


def cleanup_distributed() -> None:
    """Destroy the default process group if one was started.

    On the normal path all ranks meet at a barrier first: a rank that tears
    gloo down while another still has collectives in flight aborts the
    process ("terminate called without an active exception"). When called
    while an exception propagates (a ``finally`` clause) the barrier is
    skipped, since the other ranks may never reach it.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        if sys.exc_info()[0] is None:
            torch_dist.barrier()
        torch_dist.destroy_process_group()
