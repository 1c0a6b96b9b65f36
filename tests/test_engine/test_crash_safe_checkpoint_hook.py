"""CrashSafeCheckpointHook: atomic checkpoints and pointer, and resumed runs
(also after SIGKILL mid-epoch) that end with the same weights as an
uninterrupted run with the same seed."""
import errno
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import pns_mmdet  # noqa: F401  (registers the hook and the safe loader)
from pns_mmdet.engine import AtomicLocalBackend, load_checkpoint_file
from pns_mmdet.utils import atomic_write

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, HERE)
from toy_training import toy_config  # noqa: E402

ITERS_PER_EPOCH = 8


def train(work_dir, max_epochs=3, resume=False, **hook_kwargs):
    cfg = Config(toy_config(str(work_dir), max_epochs, **hook_kwargs))
    cfg.resume = resume
    cfg.experiment_name = f'toy_{max_epochs}_{resume}_{time.time_ns()}'
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def final_state(work_dir, epoch=3):
    ckpt = load_checkpoint_file(
        osp.join(str(work_dir), f'epoch_{epoch}.pth'), 'cpu')
    return ckpt['meta']['iter'], ckpt['state_dict']


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        # Same ops in the same order on the same CPU: bitwise equal.
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope='module')
def straight(tmp_path_factory):
    """Uninterrupted seeded 3-epoch run."""
    work_dir = tmp_path_factory.mktemp('straight')
    train(work_dir)
    return final_state(work_dir)


def test_resume_continues_identically(tmp_path, straight):
    train(tmp_path, max_epochs=1)
    train(tmp_path, max_epochs=3, resume=True)
    iters, state = final_state(tmp_path)
    assert iters == straight[0] == 3 * ITERS_PER_EPOCH
    assert_same_weights(state, straight[1])


def test_without_reseeding_resume_diverges(tmp_path, straight):
    """The reason for reseeding: validation and the data set draw random
    numbers, which mmengine does not save, so a resumed run differs."""
    train(tmp_path, max_epochs=1, reseed_per_iter=False)
    train(tmp_path, max_epochs=3, resume=True, reseed_per_iter=False)
    _, state = final_state(tmp_path)
    assert not all(torch.equal(state[k], straight[1][k]) for k in state)


def test_failed_save_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    """Disk full half-way through writing epoch 2 with max_keep_ckpts=1:
    epoch_1.pth must still exist, be complete and be the pointer's target
    (mmengine's own hook deletes it first and writes in place)."""
    real_put = AtomicLocalBackend.put

    def failing_put(self, obj, filepath):
        if not str(filepath).endswith('epoch_2.pth'):
            return real_put(self, obj, filepath)
        # What the backend does, with the disk filling up half-way.
        with atomic_write(filepath, 'wb') as f:
            f.write(obj[:len(obj) // 2])
            raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(AtomicLocalBackend, 'put', failing_put)
    with pytest.raises(OSError, match='No space'):
        train(tmp_path, max_epochs=3, max_keep_ckpts=1)
    files = sorted(os.listdir(tmp_path))
    assert 'epoch_2.pth' not in files
    assert not [f for f in files if '.tmp-' in f]
    with open(tmp_path / 'last_checkpoint') as f:
        assert f.read() == str(tmp_path / 'epoch_1.pth')
    iters, _ = final_state(tmp_path, epoch=1)
    assert iters == ITERS_PER_EPOCH


def test_sigkill_mid_epoch_then_resume(tmp_path, straight):
    """tools/train.py is killed with SIGKILL in the middle of epoch 2 (after
    epoch_1.pth), then `--resume` finishes the run: same iteration count
    and bitwise the same weights as the uninterrupted run."""
    cfg_path = tmp_path / 'toy.py'
    Config(toy_config(str(tmp_path / 'work'))).dump(str(cfg_path))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, REPO]),
               PNS_TOY_STALL_AT=str(ITERS_PER_EPOCH + 5),
               PNS_TOY_READY=str(tmp_path / 'ready'))
    cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'),
           str(cfg_path)]
    proc = subprocess.Popen(cmd, env=env, cwd=str(tmp_path),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not (tmp_path / 'ready').exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, 'training never reached iter 13'
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    work = tmp_path / 'work'
    assert (work / 'epoch_1.pth').exists()
    assert not (work / 'epoch_2.pth').exists()

    env.pop('PNS_TOY_STALL_AT')
    done = subprocess.run(cmd + ['--resume'], env=env, cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    iters, state = final_state(work)
    assert iters == straight[0] == 3 * ITERS_PER_EPOCH
    assert_same_weights(state, straight[1])
