"""End-to-end tests of tools/evaluate.py on instance maps in a tmp dir."""
import importlib.util
import json
import os.path as osp
import runpy
import sys

import cv2
import numpy as np
import pytest
import scipy.io
from PIL import Image

TRUE = np.array([[1, 1, 1, 0, 2, 2],
                 [1, 1, 1, 0, 2, 2],
                 [0, 0, 0, 0, 0, 0],
                 [3, 3, 0, 0, 0, 0]])
PRED = np.array([[1, 1, 0, 0, 2, 2],
                 [1, 1, 0, 0, 2, 2],
                 [0, 0, 0, 0, 2, 2],
                 [0, 0, 0, 0, 0, 0]])


@pytest.fixture(scope='module')
def tool(repo_root):
    path = osp.join(repo_root, 'tools', 'evaluate.py')
    spec = importlib.util.spec_from_file_location('pns_evaluate_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _png16(path, arr):
    Image.fromarray(arr.astype(np.uint16)).save(path)


@pytest.fixture
def dirs(tmp_path):
    gt, pred = tmp_path / 'gt', tmp_path / 'pred'
    gt.mkdir()
    pred.mkdir()
    # three images in three prediction formats; ids 1000+ test 16-bit
    _png16(gt / 'a.png', TRUE)
    np.save(pred / 'a.npy', PRED.astype(np.int32))
    _png16(gt / 'b.png', TRUE * 1000)
    scipy.io.savemat(pred / 'b.mat', dict(inst_map=TRUE.astype(np.int32)))
    _png16(gt / 'c.png', np.zeros_like(TRUE))
    cv2.imwrite(str(pred / 'c.tif'), np.zeros_like(TRUE, np.uint16))
    (gt / 'notes.txt').write_text('ignored: not a map')
    return gt, pred


def test_end_to_end_json_layout(tool, dirs, tmp_path):
    gt, pred = dirs
    out_file = tmp_path / 'res' / 'metrics.json'
    out = tool.main(['--gt', str(gt), '--pred', str(pred), '--out',
                     str(out_file), '--radius', '12'])
    saved = json.loads(out_file.read_text())
    assert saved == out
    assert list(saved['per_image']) == ['a', 'b', 'c']
    assert saved['per_image']['a'] == pytest.approx(
        dict(aji=4 / 7, aji_plus=4 / 7, dq=0.8, sq=2 / 3, pq=8 / 15))
    assert saved['per_image']['b'] == dict(aji=1.0, aji_plus=1.0, dq=1.0,
                                           sq=1.0, pq=1.0)
    # both maps empty: undefined, written as null, skipped by the mean
    assert saved['per_image']['c'] == dict(aji=None, aji_plus=None, dq=None,
                                           sq=None, pq=None)
    assert saved['mean']['pq'] == pytest.approx((8 / 15 + 1) / 2)
    assert saved['mean']['num_images'] == 3
    # centroids: 3 + 3 GT, 2 + 3 predictions, 5 matched within 12 px
    det = saved['detection']
    assert (det['tp'], det['num_pred'], det['num_gt']) == (5, 5, 6)
    assert det['f1'] == pytest.approx(10 / 11)


def test_classes_and_tissues(tool, dirs, tmp_path):
    gt, pred = dirs
    gt_cls, pred_cls = tmp_path / 'gt_cls', tmp_path / 'pred_cls'
    gt_cls.mkdir()
    pred_cls.mkdir()
    lut_t = np.array([0, 1, 2, 1])
    _png16(gt_cls / 'a.png', lut_t[TRUE])
    _png16(pred_cls / 'a.png', np.where(PRED > 0, 1, 0))
    _png16(gt_cls / 'b.png', lut_t[TRUE])
    _png16(pred_cls / 'b.png', lut_t[TRUE])
    for d in (gt_cls, pred_cls):
        _png16(d / 'c.png', np.zeros_like(TRUE))
    tissues = tmp_path / 'tissues.json'
    tissues.write_text(json.dumps(dict(a='Breast', b='Colon', c='Colon')))
    out = tool.main([
        '--gt', str(gt), '--pred', str(pred), '--gt-classes', str(gt_cls),
        '--pred-classes', str(pred_cls), '--class-names', 'Neo', 'Inf',
        '--tissues', str(tissues)
    ])
    a = out['per_image']['a']
    assert a['bpq'] == pytest.approx(8 / 15)
    assert a['pq_Neo'] == pytest.approx(1 / 3) and a['pq_Inf'] == 0.0
    assert out['per_image']['c']['bpq'] is None
    assert out['per_tissue']['Breast']['mpq'] == pytest.approx(1 / 6)
    assert out['per_tissue']['Colon']['mpq'] == 1.0
    assert out['mean']['mpq'] == pytest.approx((1 / 6 + 1) / 2)
    assert out['mean']['bpq'] == pytest.approx((8 / 15 + 1) / 2)


def test_clear_errors(tool, dirs, tmp_path):
    gt, pred = dirs
    (pred / 'c.tif').unlink()
    np.save(pred / 'd.npy', PRED)
    with pytest.raises(ValueError, match=r"without prediction .*\['c'\].*"
                       r"without GT map .*\['d'\]"):
        tool.main(['--gt', str(gt), '--pred', str(pred)])
    (pred / 'd.npy').unlink()
    np.save(pred / 'c.npy', np.zeros((5, 5), np.int32))
    with pytest.raises(ValueError, match=r"'c'.*c.png is \(4, 6\).*c.npy is "
                       r'\(5, 5\)'):
        tool.main(['--gt', str(gt), '--pred', str(pred)])
    _png16(pred / 'c.png', np.zeros_like(TRUE))
    with pytest.raises(ValueError, match='same stem'):
        tool.main(['--gt', str(gt), '--pred', str(pred)])
    with pytest.raises(FileNotFoundError, match='missing_dir'):
        tool.main(['--gt', str(gt), '--pred', str(tmp_path / 'missing_dir')])
    with pytest.raises(SystemExit):
        tool.parse_args(['--gt', 'x', '--pred', 'y', '--class-names', 'a'])


def test_cli_exit_message(repo_root, dirs, monkeypatch, capsys):
    # the __main__ path, in-process (a subprocess would re-import torch)
    gt, pred = dirs
    np.save(pred / 'c.npy', np.full(TRUE.shape, -1, np.int32))
    (pred / 'c.tif').unlink()
    script = osp.join(repo_root, 'tools', 'evaluate.py')
    monkeypatch.setattr(sys, 'argv',
                        [script, '--gt', str(gt), '--pred', str(pred)])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(script, run_name='__main__')
    # sys.exit(str) prints the message to stderr and exits with status 1
    assert exc.value.code.startswith('error: ')
    assert 'c.npy' in exc.value.code and 'negative' in exc.value.code
