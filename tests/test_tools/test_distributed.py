"""DDP on CPU: torchrun with 2 gloo processes against a 1-process run.

The tiny configs use GroupNorm (no BatchNorm statistics, which differ per
process without SyncBN) and no random augmentation, so 2 processes with
half the batch each must take the same steps as 1 process with the whole
batch. Every run is a subprocess (``OMP_NUM_THREADS=1``) of
tools/train.py / tools/test.py; the 2-process runs go through
tools/dist_train.sh / dist_test.sh.
"""
import glob
import json
import math
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from pns_mmdet.engine.distributed import dist_backend, setup_distributed

from tool_loading import load_tool

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

TRAIN_CONFIG = '''
_base_ = [
    '{repo}/configs/_base_/models/prompter_convnext-s_fpn.py',
    '{repo}/configs/_base_/datasets/synthetic.py',
    '{repo}/configs/_base_/schedules/prompter_adamw_200e.py',
    '{repo}/configs/_base_/default_runtime.py',
]
data_root = '{data}/'
GN = dict(type='GN', num_groups=4)
model = dict(
    backbone=dict(_delete_=True, type='ResNet', depth=18, base_channels=8,
                  out_indices=(0, 1, 2, 3), norm_cfg=GN, init_cfg=None),
    neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
    bbox_head=dict(in_channels=16, feat_channels=16, hidden_dim=16,
                   dropout=0.0),
    aux_mask_head=dict(_delete_=True, type='AuxMaskHead', in_channels=16,
                       feat_channels=16, norm_cfg=GN))
# no random augmentation: the same images whatever the process
train_pipeline = _base_.load_steps + _base_.pack_steps
train_dataloader = dict(
    batch_size={batch_size}, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
train_cfg = dict(max_epochs=2, val_interval=100)
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = None
test_dataloader = None
test_evaluator = None
optim_wrapper = dict(optimizer=dict(lr=2e-3))
custom_hooks = []
randomness = dict(seed=0)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(type='CheckpointHook', interval=1))
'''

# A model double for the metric test: per image, predictions derived from
# the GT with image-dependent errors (missed, shifted and relabelled nuclei,
# one false positive), so every image has different statistics and a
# duplicate would change the dataset numbers. Imported by the subprocesses.
PERTURBED_GT_MODEL = """
import numpy as np
import torch
from mmdet.registry import MODELS
from mmdet.structures.mask import BitmapMasks
from mmengine.model import BaseModel
from mmengine.structures import InstanceData


@MODELS.register_module()
class PerturbedGT(BaseModel):
    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # DDP needs one

    def forward(self, inputs, data_samples=None, mode='predict'):
        out = []
        for sample in data_samples:
            i = int(sample.img_id)
            gt = sample.gt_instances
            n = len(gt)
            keep = np.array([(j + i) % 4 != 0 for j in range(n)], bool)
            masks = gt.masks.to_ndarray()[keep]
            masks = np.roll(masks, i % 3, axis=2)
            fp = np.zeros((1, ) + masks.shape[1:], masks.dtype)
            fp[0, :6, :6] = 1
            masks = np.concatenate([masks, fp])
            labels = gt.labels[torch.from_numpy(keep)].clone()
            labels[::3] = (labels[::3] + 1 + i) % 5
            labels = torch.cat([labels, labels.new_zeros(1)])
            points = gt.points[torch.from_numpy(keep)] + float(i % 3)
            points = torch.cat([points, points.new_tensor([[3., 3.]])])
            pred = InstanceData(
                masks=BitmapMasks(masks, *masks.shape[1:]), labels=labels,
                points=points,
                scores=torch.linspace(1, 0.5, len(labels)))
            sample.pred_instances = pred
            out.append(sample)
        return out
"""

TEST_CONFIG = '''
_base_ = [
    '{repo}/configs/_base_/datasets/synthetic.py',
    '{repo}/configs/_base_/default_runtime.py'
]
custom_imports = dict(imports=['pns_mmdet', 'perturbed_gt_model'],
                      allow_failed_imports=False)
data_root = '{data}/'
model = dict(type='PerturbedGT')
train_dataloader = None
train_cfg = None
optim_wrapper = None
val_cfg = None
val_dataloader = None
val_evaluator = None
test_cfg = dict(type='TestLoop')
test_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root))
test_evaluator = [dict(type='PointDetectionMetric'),
                  dict(type='NucleusInstanceMetric')]
'''

NUM_TEST = 3  # odd: the second of 2 ranks gets a padded copy of image 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run(cmd, cwd, timeout=300):
    env = dict(os.environ,
               OMP_NUM_THREADS='1',
               PYTHON=sys.executable,
               PORT=str(free_port()),
               PYTHONPATH=os.pathsep.join(
                   [REPO, str(cwd), os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f'{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n'
        f'{proc.stderr[-6000:]}')
    return proc


def train_cmd(cfg, work_dir, nproc, *extra):
    if nproc == 1:
        return [sys.executable, osp.join(REPO, 'tools', 'train.py'), cfg,
                '--work-dir', work_dir, *extra]
    return ['bash', osp.join(REPO, 'tools', 'dist_train.sh'), cfg,
            str(nproc), '--work-dir', work_dir, *extra]


def eval_cmd(cfg, work_dir, nproc):
    if nproc == 1:
        return [sys.executable, osp.join(REPO, 'tools', 'test.py'), cfg,
                '--work-dir', work_dir]
    return ['bash', osp.join(REPO, 'tools', 'dist_test.sh'), cfg,
            str(nproc), '--work-dir', work_dir]


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    from pns_mmdet.datasets.synthetic import make_synthetic_dataset
    root = str(tmp_path_factory.mktemp('dist_data'))
    make_synthetic_dataset(root, num_train=6, num_val=1, num_test=NUM_TEST,
                           size=128, seed=0, num_nuclei=(8, 16))
    return root


def params(ckpt):
    state = torch.load(ckpt, map_location='cpu', weights_only=False)
    return state['state_dict'], state['meta']


def assert_same_params(a, b, what):
    assert a.keys() == b.keys()
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5,
                                       msg=lambda m: f'{what} {k}: {m}')
        else:
            assert torch.equal(a[k], b[k]), f'{what} {k}'


def test_train_two_processes_match_one_and_resume(tmp_path, data_root):
    """1 process, batch 4 vs 2 x batch 2: equal parameters after each
    epoch; a 2-process run resumed from its own epoch-1 checkpoint ends
    where the 1-process run does, training epoch 2 only."""
    cfgs = {}
    for bs in (4, 2):
        cfgs[bs] = str(tmp_path / f'train_bs{bs}.py')
        with open(cfgs[bs], 'w') as f:
            f.write(TRAIN_CONFIG.format(repo=REPO, data=data_root,
                                        batch_size=bs))
    one, two = str(tmp_path / 'one'), str(tmp_path / 'two')
    run(train_cmd(cfgs[4], one, 1), tmp_path)
    run(train_cmd(cfgs[2], two, 2, '--cfg-options', 'train_cfg.max_epochs=1'),
        tmp_path)
    assert not osp.exists(osp.join(two, 'epoch_2.pth'))
    resumed = run(train_cmd(cfgs[2], two, 2, '--resume'), tmp_path)

    for epoch in (1, 2):
        p1, m1 = params(osp.join(one, f'epoch_{epoch}.pth'))
        p2, m2 = params(osp.join(two, f'epoch_{epoch}.pth'))
        # 6 images, global batch 4: 2 steps per epoch in both runs
        assert (m1['epoch'], m1['iter']) == (epoch, 2 * epoch)
        assert (m2['epoch'], m2['iter']) == (epoch, 2 * epoch)
        assert_same_params(p1, p2, f'epoch {epoch}')
    # the initial weights are not what both runs end with
    p0, _ = params(osp.join(two, 'epoch_1.pth'))
    assert any(not torch.equal(p0[k], p2[k]) for k in p0
               if p0[k].is_floating_point())
    # the resumed run started at epoch 2 (not again from scratch)
    log = resumed.stdout + resumed.stderr
    assert 'resumed epoch: 1, iter: 2' in log
    assert re.search(r'Epoch\(train\)\s+\[2\]', log)
    assert not re.search(r'Epoch\(train\)\s+\[1\]', log)
    # mmengine's runtime table: 2 processes ("GPU number" is the world size)
    assert re.search(r'Distributed training: True', log)
    assert re.search(r'GPU number: 2\b', log)


def read_metrics(work_dir):
    files = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    assert files, f'no metrics JSON under {work_dir}'
    with open(files[-1]) as f:
        return json.load(f)


def test_test_two_processes_match_one_on_odd_images(tmp_path, data_root,
                                                   monkeypatch):
    """Point and instance metrics over 2 ranks on 3 images (one padded
    duplicate) equal the 1-process numbers exactly. The 1-process run is
    tools/test.py in this process (no subprocess start-up)."""
    cfg = str(tmp_path / 'test_cfg.py')
    with open(cfg, 'w') as f:
        f.write(TEST_CONFIG.format(repo=REPO, data=data_root))
    with open(tmp_path / 'perturbed_gt_model.py', 'w') as f:
        f.write(PERTURBED_GT_MODEL)
    run(eval_cmd(cfg, str(tmp_path / 'test2'), 2), tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, 'argv', ['test.py'] + eval_cmd(
        cfg, str(tmp_path / 'test1'), 1)[2:])
    load_tool('test').main()
    results = {}
    for nproc in (1, 2):
        work_dir = str(tmp_path / f'test{nproc}')
        results[nproc] = read_metrics(work_dir)
        with open(glob.glob(osp.join(work_dir, '*', '*.log'))[-1]) as f:
            log = f.read()
        # NucleusInstanceMetric's table: one row with the image count
        counts = re.findall(r'\|\s*images\s*\|[^\n]*\n[^\n]*\n\|\s*(\d+)\s*\|',
                            log)
        assert counts and int(counts[0]) == NUM_TEST, log[-3000:]
    one, two = ({k: v
                 for k, v in results[n].items()
                 if k.startswith(('points/', 'nuclei/'))} for n in (1, 2))
    assert one.keys() == two.keys()
    assert 'points/f1' in one and 'nuclei/aji' in one
    for k, v in one.items():
        if isinstance(v, float) and math.isnan(v):
            assert math.isnan(two[k]), k
        else:
            assert two[k] == v, (k, v, two[k])
    # non-degenerate numbers: some nuclei found, some missed
    assert 0.3 < one['points/recall'] < 1
    assert 0.3 < one['nuclei/aji'] < 1


# --------------------------------------------------------- setup errors
def make_cfg(**kwargs):
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict())))
    cfg.merge_from_dict(kwargs)
    return cfg


def test_backend_from_device_unless_configured():
    assert dist_backend(make_cfg(), 'cpu') == 'gloo'
    assert dist_backend(make_cfg(), 'cuda') == 'nccl'
    cfg = make_cfg(env_cfg=dict(dist_cfg=dict(backend='gloo')))
    assert dist_backend(cfg, 'cuda') == 'gloo'
    cfg = make_cfg(env_cfg=dict(dist_cfg=dict(backend='nccl')))
    with pytest.raises(ValueError, match="backend='nccl' needs CUDA"):
        dist_backend(cfg, 'cpu')


@pytest.mark.skipif(torch.cuda.is_available(), reason='CPU-only checks')
def test_setup_errors_on_cpu(monkeypatch):
    for var in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR',
                'MASTER_PORT'):
        monkeypatch.delenv(var, raising=False)
    assert setup_distributed(make_cfg(launcher='none')).launcher == 'none'
    with pytest.raises(RuntimeError, match='RANK, WORLD_SIZE.*torchrun'):
        setup_distributed(make_cfg(launcher='pytorch'))
    with pytest.raises(RuntimeError, match='--launcher slurm is only'):
        setup_distributed(make_cfg(launcher='slurm'))
    with pytest.raises(ValueError, match="sync_bn='torch' needs GPUs"):
        setup_distributed(make_cfg(launcher='pytorch', sync_bn='torch'))
