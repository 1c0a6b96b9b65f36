"""tools/infer.py: outputs, bad inputs, and the demo pipeline end to end.

The bad-input tests call the CLI in-process with a tiny random model; the
last test runs tools/demo.py at toy scale, which drives tools/train.py,
tools/test.py and tools/infer.py as subprocesses with this interpreter.
"""
import json
import os.path as osp
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from shapely import geometry

from tiny_promptnucseg import TINY_CONFIG
from tool_loading import load_tool

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


infer = load_tool('infer')




@pytest.fixture()
def tiny_config(tmp_path):
    """A tiny random PromptNucSeg config; score_thr 0.999 makes the random
    prompter find no nucleus, so outputs are deterministic (empty)."""

    def make(num_classes=2, score_thr=0.999, name='tiny.py'):
        path = tmp_path / name
        path.write_text(
            TINY_CONFIG.format(
                repo=REPO, num_classes=num_classes, score_thr=score_thr))
        return str(path)

    return make


def write_images(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / 'rgb.png')
    Image.fromarray(rgb[..., 0]).save(folder / 'gray.png')  # grayscale
    Image.fromarray(np.dstack([rgb, np.full((40, 50), 128, np.uint8)]),
                    'RGBA').save(folder / 'rgba.png')
    cv2.imwrite(str(folder / 'deep.png'),
                (rgb.astype(np.uint16) * 257)[..., ::-1])  # 16-bit colour
    Image.fromarray(rgb[:20, :30]).save(folder / 'small.png')  # < a tile
    Image.fromarray(np.zeros((70, 90, 3), np.uint8)).save(
        folder / 'blank.png')  # no nucleus
    (folder / 'garbage.png').write_bytes(b'not an image at all')
    data = (folder / 'rgb.png').read_bytes()
    (folder / 'truncated.png').write_bytes(data[:len(data) // 2])
    (folder / 'notes.txt').write_text('ignored: not an image extension')


def test_bad_inputs_reported_and_run_continues(tmp_path, tiny_config,
                                               capsys):
    images = tmp_path / 'images'
    write_images(images)
    out = tmp_path / 'out'
    code = infer.main([tiny_config(), str(images), '--out-dir', str(out)])
    captured = capsys.readouterr()
    assert code == 1  # some inputs failed, the others were processed
    assert 'garbage.png' in captured.err and 'truncated.png' in captured.err
    assert 'cannot read image' in captured.err
    assert '6 image(s), 0 nuclei' in captured.out
    sizes = dict(rgb=(40, 50), gray=(40, 50), rgba=(40, 50), deep=(40, 50),
                 small=(20, 30), blank=(70, 90))
    for stem, hw in sizes.items():
        inst = cv2.imread(str(out / f'{stem}_inst.png'), cv2.IMREAD_UNCHANGED)
        assert inst.dtype == np.uint16 and inst.shape == hw
        assert inst.max() == 0  # the correct empty result
        cls = cv2.imread(str(out / f'{stem}_class.png'), cv2.IMREAD_UNCHANGED)
        assert cls.shape == hw and cls.max() == 0
        fc = json.loads((out / f'{stem}.geojson').read_text())
        assert fc == {'type': 'FeatureCollection', 'features': []}
        assert cv2.imread(str(out / f'{stem}_overlay.png')).shape[:2] == hw
    assert not (out / 'garbage_inst.png').exists()
    coco = COCO(str(out / 'predictions_coco.json'))
    assert len(coco.getImgIds()) == 6 and coco.getAnnIds() == []
    assert [c['name'] for c in coco.dataset['categories']] == [
        'tumour', 'immune'
    ]


class DiscSegmentor(torch.nn.Module):
    """Stub segmentor: a disc of radius 6 around each positive prompt."""

    img_size = 64

    def encode_image(self, inputs):
        return inputs[:, :1]

    def decode_prompts(self, emb, coords, labels, chunk_size=256,
                       upsample=True):
        s = self.img_size
        yy, xx = torch.meshgrid(
            torch.arange(s), torch.arange(s), indexing='ij')
        c = coords[:, 0]
        d2 = (xx[None] - c[:, 0, None, None])**2 + (
            yy[None] - c[:, 1, None, None])**2
        return 36. - d2, (c[:, 0] * 7 + c[:, 1] * 3) % 100 / 100.


def test_outputs_agree_one_to_one(tmp_path, tiny_config, monkeypatch,
                                  capsys):
    """Real prompter (random, every point kept) + disc stub segmentor: the
    instance PNG, class PNG, GeoJSON and COCO JSON describe the same
    nuclei."""
    import pns_mmdet.apis as apis

    class StubInferencer(apis.NucleusInferencer):

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.model.segmentor = DiscSegmentor()
            # Random weights may rank background first at every anchor (it
            # depends on the global RNG state left by earlier tests): make
            # the background logit the lowest so every anchor is a nucleus.
            last = self.model.prompter.bbox_head.cls_mlp[-1]
            with torch.no_grad():
                last.bias[-1] = -1e4

    monkeypatch.setattr(apis, 'NucleusInferencer', StubInferencer)
    images = tmp_path / 'images'
    images.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (150, 130, 3), dtype=np.uint8)).save(
        images / 'big.png')
    out = tmp_path / 'out'
    code = infer.main(
        [tiny_config(score_thr=0.0), str(images), '--out-dir', str(out)])
    assert code == 0
    assert '1 image(s)' in capsys.readouterr().out
    inst = cv2.imread(str(out / 'big_inst.png'), cv2.IMREAD_UNCHANGED)
    cls = cv2.imread(str(out / 'big_class.png'), cv2.IMREAD_UNCHANGED)
    assert inst.shape == (150, 130) and inst.max() > 5
    assert np.array_equal(cls > 0, inst > 0) and cls.max() <= 2
    ids = sorted(set(np.unique(inst)) - {0})
    assert ids == list(range(1, len(ids) + 1))
    fc = json.loads((out / 'big.geojson').read_text())
    assert [f['properties']['measurements']['Instance ID']
            for f in fc['features']] == ids
    coco = COCO(str(out / 'predictions_coco.json'))
    anns = {a['instance_id']: a for a in coco.loadAnns(coco.getAnnIds())}
    assert sorted(anns) == ids
    names = {1: 'tumour', 2: 'immune'}
    for f in fc['features']:
        i = f['properties']['measurements']['Instance ID']
        g = geometry.shape(f['geometry'])
        assert g.is_valid and g.area == (inst == i).sum()
        assert 0 <= g.bounds[0] and g.bounds[2] <= 130 and g.bounds[3] <= 150
        label = int(cls[inst == i][0])
        assert f['properties']['classification']['name'] == names[label]
        assert anns[i]['category_id'] == label
        assert np.array_equal(coco.annToMask(anns[i]), inst == i)
    overlay = cv2.imread(str(out / 'big_overlay.png'))
    original = cv2.imread(str(images / 'big.png'))
    assert (overlay != original).any(axis=2).sum() > 0


def test_per_image_time_logged(tmp_path, tiny_config, monkeypatch, capsys):
    """One mmengine log line per image (its time; the model's part is the
    inferencer's own ``seconds``), a warning per skipped file, the total
    at the end."""
    import pns_mmdet.apis as apis

    class FixedTimeInferencer(apis.NucleusInferencer):

        def __call__(self, image):
            result = super().__call__(image)
            result.seconds = 1.25  # what the log must report as "model"
            return result

    monkeypatch.setattr(apis, 'NucleusInferencer', FixedTimeInferencer)
    images = tmp_path / 'images'
    images.mkdir()
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), np.uint8)
    for stem in ('a', 'b'):
        Image.fromarray(rgb).save(images / f'{stem}.png')
    (images / 'c.png').write_bytes(b'not an image')
    code = infer.main([tiny_config(), str(images), '--out-dir',
                       str(tmp_path / 'out')])
    out = capsys.readouterr().out
    assert code == 1
    # (the model's build messages go to the same logger first)
    lines = [ln for ln in out.splitlines()
             if re.search(r' - infer - [A-Z]+ - \d/3 ', ln)]
    assert len(lines) == 3, out
    for line, k in zip(lines[:2], (1, 2)):
        stem = 'ab'[k - 1]
        assert re.search(
            rf'- infer - INFO - {k}/3 .*{stem}\.png: 0 nuclei, '
            r'\d+\.\d\d s \(model 1\.25 s\)$', line), line
    assert re.search(r'- infer - WARNING - 3/3 .*c\.png: skipped, cannot '
                     'read image', lines[2]), lines[2]
    assert re.search(r'\[infer\] 2 image\(s\), 0 nuclei, \d+\.\d s '
                     r'\(\d+\.\d\d s/image\); 1 failed', out), out


def test_empty_folder_and_missing_input(tmp_path, tiny_config, capsys):
    (tmp_path / 'empty').mkdir()
    code = infer.main([
        tiny_config(),
        str(tmp_path / 'empty'),
        str(tmp_path / 'nope.png'),
        str(tmp_path / '*.tif'), '--out-dir',
        str(tmp_path / 'out')
    ])
    err = capsys.readouterr().err
    assert code == 2
    assert 'contains no image' in err and 'does not exist' in err
    assert 'matches no file' in err and 'no input image found' in err


def test_mismatched_checkpoint_is_a_clear_error(tmp_path, tiny_config,
                                                capsys):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import pns_mmdet  # noqa: F401
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    # A prompter trained for 3 classes does not fit the 2-class config.
    other = Config.fromfile(tiny_config(num_classes=3, name='three.py'))
    prompter = MODELS.build(other.model.prompter)
    ckpt = tmp_path / 'prompter3.pth'
    torch.save(dict(state_dict=prompter.state_dict()), ckpt)
    img = tmp_path / 'a.png'
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    code = infer.main([
        tiny_config(),
        str(img), '--out-dir',
        str(tmp_path / 'out'), '--prompter-checkpoint',
        str(ckpt)
    ])
    err = capsys.readouterr().err
    assert code == 2
    assert 'prompter_checkpoint' in err and 'shape mismatches' in err
    assert 'bbox_head' in err


def test_collect_and_unique_stems(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'b').mkdir()
    for d in ('a', 'b'):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / d /
                                                             'x.png')
    paths, problems = infer.collect_images([
        str(tmp_path / 'a'),
        str(tmp_path / 'b' / '*.png'),
        str(tmp_path / 'a' / 'x.png')
    ])
    assert len(paths) == 2 and problems == []
    assert infer.output_stems(paths) == ['x', 'x_1']


def test_demo_pipeline_end_to_end(tmp_path):
    """train.py (both parts) -> test.py -> infer.py at toy scale, through
    tools/demo.py, then check every output (about 1 min on 2 cores)."""
    work = tmp_path / 'work'
    cmd = [
        sys.executable, 'tools/demo.py', '--work-dir',
        str(work), '--data-root',
        str(tmp_path / 'data'), '--num-train', '4', '--num-val', '1',
        '--num-test', '2', '--prompter-epochs', '2', '--segmentor-epochs', '1'
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert 'nuclei/' in log  # the metric table of tools/test.py
    # The demo ends with the headline metrics read back from test.py's JSON.
    summary = proc.stdout[proc.stdout.index('end-to-end test metrics'):]
    for name in ('bPQ', 'mPQ', 'PQ', 'AJI'):
        assert re.search(rf'^{re.escape(name)} +\d\.\d{{4}}$', summary,
                         re.MULTILINE), summary
    infer_dir = work / 'infer'
    coco = COCO(str(infer_dir / 'predictions_coco.json'))
    stems = sorted(
        osp.splitext(osp.basename(p))[0]
        for p in (work / 'heldout').glob('*.png'))
    assert len(stems) == 3 and len(coco.getImgIds()) == 3
    for stem in stems:
        inst = cv2.imread(
            str(infer_dir / f'{stem}_inst.png'), cv2.IMREAD_UNCHANGED)
        image = cv2.imread(str(work / 'heldout' / f'{stem}.png'))
        assert inst.dtype == np.uint16 and inst.shape == image.shape[:2]
        fc = json.loads((infer_dir / f'{stem}.geojson').read_text())
        ids = [
            f['properties']['measurements']['Instance ID']
            for f in fc['features']
        ]
        # Instance PNG ids and GeoJSON features correspond one to one.
        assert sorted(ids) == sorted(set(np.unique(inst)) - {0})
        h, w = inst.shape
        for f in fc['features']:
            assert f['properties']['objectType'] == 'detection'
            assert 'name' in f['properties']['classification']
            g = geometry.shape(f['geometry'])
            assert g.is_valid and g.geom_type in ('Polygon', 'MultiPolygon')
            x1, y1, x2, y2 = g.bounds
            assert 0 <= x1 and 0 <= y1 and x2 <= w and y2 <= h
            i = f['properties']['measurements']['Instance ID']
            assert g.area == (inst == i).sum()
        img_id = [
            im['id'] for im in coco.dataset['images']
            if im['file_name'] == f'{stem}.png'
        ][0]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        assert len(anns) == len(ids)
        for ann in anns:
            assert np.array_equal(
                coco.annToMask(ann), inst == ann['instance_id'])
        assert (infer_dir / f'{stem}_overlay.png').is_file()
    # A few iterations do not make a good model, so the number of nuclei is
    # not checked here; test_outputs_agree_one_to_one covers a non-empty
    # result exactly.
