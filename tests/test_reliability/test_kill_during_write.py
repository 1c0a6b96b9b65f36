"""SIGKILL during tools/infer.py or a dataset converter never leaves a file
under its final name that fails to parse.

Each run is a forked child (see kill_harness.py) that SIGKILLs itself when
the bytes written under the output folder reach a chosen offset (5, 30, 60
and 95 % of what an uninterrupted run writes: the kill lands inside some
PNG or JSON), or just before the last rename. After each kill every
non-hidden file left in the output folder must parse completely (JSON
loads, PNG decodes to the end). A control run with a writer that writes in
place shows the check does find the truncated file.
"""
import json
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from PIL import Image

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, osp.join(REPO, 'tests', 'test_tools'))
from kill_harness import broken_outputs, run_killed  # noqa: E402
from tiny_promptnucseg import write_tiny_config  # noqa: E402
from tool_loading import load_tool  # noqa: E402

BYTE_FRACTIONS = (0.05, 0.3, 0.6, 0.95)


def kill_campaign(tmp_path, make_run):
    """Baseline run, then one killed run per kill point.

    ``make_run(out_dir)`` returns the function the child runs. Returns the
    list of (kill point, files left, broken files).
    """
    base_out = str(tmp_path / 'baseline')
    base = run_killed(make_run(base_out), base_out)
    assert not base['killed'] and base['exit'] == 0, base
    broken, complete = broken_outputs(base_out)
    assert not broken and complete > 0
    points = [dict(kill_at_byte=int(f * base['written']))
              for f in BYTE_FRACTIONS]
    if base['renames']:
        points.append(dict(kill_at_rename=base['renames']))
    results = []
    for k, point in enumerate(points):
        out = str(tmp_path / f'killed{k}')
        res = run_killed(make_run(out), out, **point)
        assert res['killed'], (point, res)  # it died mid-run
        broken, left = broken_outputs(out) if osp.isdir(out) else ({}, 0)
        results.append((point, left, broken))
    return base, results


def assert_none_broken(results):
    for point, _, broken in results:
        assert not broken, f'kill at {point}: {broken}'


def write_images(folder, n=3):
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    for k in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 56, 3), np.uint8)).save(
            osp.join(folder, f'tile{k}.png'))


def test_kill_during_infer(tmp_path, monkeypatch):
    # Low score threshold: the random prompter finds a few nuclei, so
    # polygons, overlays and COCO RLEs are written.
    cfg = write_tiny_config(tmp_path, score_thr=0.3)
    images = str(tmp_path / 'images')
    write_images(images)
    infer = load_tool('infer')
    monkeypatch.setattr(sys, 'stdout', open(os.devnull, 'w'))

    def make_run(out):
        def run():
            torch.manual_seed(0)  # same random model in every run
            code = infer.main([cfg, images, '--out-dir', out,
                               '--device', 'cpu'])
            assert code == 0, code
        return run

    base, results = kill_campaign(tmp_path, make_run)
    with open(tmp_path / 'baseline' / 'predictions_coco.json') as f:
        coco = json.load(f)
    assert len(coco['images']) == 3 and coco['annotations']
    assert_none_broken(results)
    # The later kills left finished outputs behind (not a vacuous check).
    assert results[-1][1] >= 3 * 4


def fake_pannuke_fold(folder, n=4):
    rng = np.random.default_rng(1)
    os.makedirs(folder)
    masks = np.zeros((n, 32, 32, 6))
    for j in range(n):
        for c in range(3):
            y, x = rng.integers(0, 26, 2)
            masks[j, y:y + 6, x:x + 6, c] = c + 1
    masks[..., 5] = masks[..., :5].sum(-1) == 0
    np.save(osp.join(folder, 'images.npy'), rng.uniform(0, 255,
                                                        (n, 32, 32, 3)))
    np.save(osp.join(folder, 'masks.npy'), masks)
    np.save(osp.join(folder, 'types.npy'), np.array(['Colon'] * n))


def test_kill_during_pannuke_converter(tmp_path):
    from pns_mmdet.converters import convert_pannuke
    src = str(tmp_path / 'raw')
    fake_pannuke_fold(src)

    def make_run(out):
        return lambda: convert_pannuke(src, out, folds=[1])

    base, results = kill_campaign(tmp_path, make_run)
    assert_none_broken(results)
    # Annotations are written last: no kill left a fold1.json behind.
    for k in range(len(results)):
        assert not osp.exists(tmp_path / f'killed{k}' / 'annotations' /
                              'fold1.json')
    assert results[-1][1] == 4 * 3  # every PNG of the 4 images


XML = ('<Annotations><Annotation Id="1"><Regions>{}</Regions></Annotation>'
       '</Annotations>')
REGION = ('<Region Id="{k}"><Vertices><Vertex X="{x}" Y="{y}"/>'
          '<Vertex X="{x2}" Y="{y}"/><Vertex X="{x2}" Y="{y2}"/>'
          '<Vertex X="{x}" Y="{y2}"/></Vertices></Region>')


def test_kill_during_monuseg_converter_cli(tmp_path, monkeypatch):
    """Through the CLI's main (tools/dataset_converters/monuseg.py)."""
    src = tmp_path / 'mon'
    (src / 'images').mkdir(parents=True)
    (src / 'annotations').mkdir()
    rng = np.random.default_rng(2)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(
            src / 'images' / f't{k}.tif')
        regions = ''.join(
            REGION.format(k=i, x=4 * i, y=3 * i, x2=4 * i + 6, y2=3 * i + 5)
            for i in range(1, 6))
        (src / 'annotations' / f't{k}.xml').write_text(XML.format(regions))
    tool = load_tool(osp.join('dataset_converters', 'monuseg'))
    monkeypatch.setattr(sys, 'stdout', open(os.devnull, 'w'))

    def make_run(out):
        def run():
            monkeypatch.setattr(sys, 'argv',
                                ['monuseg.py', str(src), out])
            tool.main()
        return run

    base, results = kill_campaign(tmp_path, make_run)
    assert_none_broken(results)


def test_harness_finds_a_file_written_in_place(tmp_path):
    """Control: a writer that dumps JSON straight into its final name is
    caught by the same kill and check."""
    out = str(tmp_path / 'naive')
    os.makedirs(out)

    def naive():
        with open(osp.join(out, 'result.json'), 'w') as f:
            json.dump({'values': list(range(5000))}, f)

    res = run_killed(naive, out, kill_at_byte=1000)
    assert res['killed']
    broken, left = broken_outputs(out)
    assert left == 1 and list(broken) == ['result.json']
    assert 'JSONDecodeError' in broken['result.json']


@pytest.mark.parametrize('fraction', [0.5])
def test_harness_finds_a_png_written_in_place(tmp_path, fraction):
    """Control for PNGs: cv2.imwrite to the final name, killed mid-file."""
    import cv2
    out = str(tmp_path / 'naive')
    os.makedirs(out)
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    size = len(cv2.imencode('.png', img)[1])
    res = run_killed(lambda: cv2.imwrite(osp.join(out, 'a.png'), img), out,
                     kill_at_byte=int(size * fraction))
    assert res['killed']
    broken, _ = broken_outputs(out)
    assert list(broken) == ['a.png']
