"""tools/infer.py -> tools/evaluate.py on one folder, without renaming.

infer writes ``<stem>_inst.png`` and ``<stem>_class.png`` beside overlays,
GeoJSON and a COCO JSON; evaluate must read that folder as it is (its
``--pred-suffix auto`` / ``--pred-class-suffix auto``). The tiny random
model finds no nucleus (score_thr 0.999), so its maps are empty; the test
then rewrites the very files infer wrote with constructed predictions
(infer's own writers) to check exact PQ / AJI through the same files.
"""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from pns_mmdet.visualization import save_class_png, save_instance_png
from tiny_promptnucseg import write_tiny_config
from tool_loading import load_tool

infer = load_tool('infer')
evaluate = load_tool('evaluate')

H, W = 40, 50


def gt_map():
    """Image 'a': nuclei 1 and 2 of 4 px each (2 x 2 squares)."""
    m = np.zeros((H, W), np.int32)
    m[2:4, 2:4] = 1
    m[10:12, 10:12] = 2
    return m


@pytest.fixture(scope='module')
def infer_run(tmp_path_factory):
    """GT folders and tools/infer.py's output folder for 2 tiny images."""
    root = tmp_path_factory.mktemp('roundtrip')
    images, gt, gt_cls = root / 'images', root / 'gt', root / 'gt_cls'
    for d in (images, gt, gt_cls):
        d.mkdir()
    rng = np.random.default_rng(0)
    for stem in ('a', 'b'):
        Image.fromarray(rng.integers(0, 255, (H, W, 3), np.uint8)).save(
            images / f'{stem}.png')
        save_instance_png(str(gt / f'{stem}.png'), gt_map())
        save_class_png(str(gt_cls / f'{stem}.png'),
                       (gt_map() > 0).astype(np.uint8))  # class 1
    out = root / 'out'
    code = infer.main([write_tiny_config(root), str(images), '--out-dir',
                       str(out)])
    assert code == 0
    assert sorted(os.listdir(out)) == [
        'a.geojson', 'a_class.png', 'a_inst.png', 'a_overlay.png',
        'b.geojson', 'b_class.png', 'b_inst.png', 'b_overlay.png',
        'predictions_coco.json'
    ]
    return dict(gt=str(gt), gt_cls=str(gt_cls), out=out)


def test_evaluate_reads_infer_output_folder(infer_run, capsys):
    # As infer wrote it: no nucleus found, so every GT nucleus is missed.
    out = evaluate.main(['--gt', infer_run['gt'], '--pred',
                         str(infer_run['out'])])
    assert list(out['per_image']) == ['a', 'b']
    for row in out['per_image'].values():
        assert (row['pq'], row['dq'], row['aji']) == (0.0, 0.0, 0.0)
    assert 'prediction maps: <stem>_inst.<ext>' in capsys.readouterr().err


def test_round_trip_exact_pq(infer_run, tmp_path):
    out_dir = tmp_path / 'out'  # a copy: the module's run stays as written
    shutil.copytree(infer_run['out'], out_dir)
    # 'a': nucleus 1 found exactly, nucleus 2 missed, one false positive
    # of 2 px: TP 1, FP 1, FN 1 -> DQ 1 / (1 + 0.5 + 0.5) = 0.5, SQ 1,
    # PQ 0.5; AJI 4 / (4 + 4 + 2) = 0.4. 'b': both found exactly.
    pred_a = np.zeros((H, W), np.int32)
    pred_a[2:4, 2:4] = 1
    pred_a[30, 40:42] = 2
    for stem, pred in (('a', pred_a), ('b', gt_map())):
        inst = out_dir / f'{stem}_inst.png'
        assert inst.is_file()  # the file infer wrote, rewritten in place
        save_instance_png(str(inst), pred)
        save_class_png(str(out_dir / f'{stem}_class.png'),
                       (pred > 0).astype(np.uint8))
    res = evaluate.main([
        '--gt', infer_run['gt'], '--pred', str(out_dir), '--gt-classes',
        infer_run['gt_cls'], '--pred-classes', str(out_dir),
        '--class-names', 'tumour', 'immune', '--out',
        str(tmp_path / 'metrics.json')
    ])
    a, b = res['per_image']['a'], res['per_image']['b']
    assert (a['dq'], a['sq'], a['pq']) == (0.5, 1.0, 0.5)
    assert a['aji'] == pytest.approx(0.4, abs=1e-12)
    assert (b['pq'], b['aji']) == (1.0, 1.0)
    assert res['mean']['pq'] == 0.75
    # Class maps read from the same folder (<stem>_class.png).
    assert (a['bpq'], a['pq_tumour']) == (0.5, 0.5)
    assert res['mean']['mpq'] == 0.75


def test_unmatched_stems_listed_with_suffix(infer_run, tmp_path):
    out_dir = infer_run['out']
    partial = tmp_path / 'partial'
    partial.mkdir()
    for name in ('a_inst.png', 'a_class.png', 'a_overlay.png'):
        (partial / name).write_bytes((out_dir / name).read_bytes())
    with pytest.raises(ValueError) as err:
        evaluate.main(['--gt', infer_run['gt'], '--pred', str(partial)])
    msg = str(err.value)
    assert "1 GT map(s) without prediction in" in msg and "['b']" in msg
    assert "read as <stem>_inst.<ext> (--pred-suffix '_inst'" in msg
    # Exact stems asked for: infer's file names are listed as unmatched.
    with pytest.raises(ValueError, match=r"2 GT map\(s\) without prediction"
                       r".*\['a', 'b'\].*3 prediction\(s\) without GT map"
                       r".*\['a_class', 'a_inst', 'a_overlay'\]"):
        evaluate.main(['--gt', infer_run['gt'], '--pred', str(partial),
                       '--pred-suffix', ''])
    with pytest.raises(ValueError, match=r'no instance maps named '
                       r'<stem>_seg\.<ext>'):
        evaluate.main(['--gt', infer_run['gt'], '--pred', str(partial),
                       '--pred-suffix', '_seg'])
