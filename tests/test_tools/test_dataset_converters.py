"""Tests for the dataset converters (library functions and CLIs)."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from PIL import Image

from pns_mmdet.datasets.coco_utils import annotations_to_instance_map
from pns_mmdet.converters import (PANNUKE_FOLD_ORDERS, convert_cpm17,
                                  convert_generic, convert_monuseg,
                                  convert_pannuke, find_pannuke_fold,
                                  parse_aperio_xml)
from pns_mmdet.datasets.io import load_image, load_instance_map

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _load(path):
    with open(path) as f:
        return json.load(f)


def _maps_from_json(coco):
    """image file_name -> instance map decoded from the annotations."""
    out = {}
    for im in coco['images']:
        anns = [a for a in coco['annotations'] if a['image_id'] == im['id']]
        out[im['file_name']] = annotations_to_instance_map(
            anns, im['height'], im['width'])
    return out


def _fake_fold(folder, n, seed, nested_fold=None):
    """Tiny PanNuke-like fold (float arrays like the real release)."""
    rng = np.random.default_rng(seed)
    imgs = rng.uniform(0, 255, (n, 32, 32, 3))
    masks = np.zeros((n, 32, 32, 6))
    masks[0, 2:6, 2:6, 0] = 7  # neoplastic id 7
    masks[0, 4:9, 4:9, 1] = 7  # inflammatory re-uses id 7, overlaps
    masks[0, 20:25, 20:22, 2] = 3
    masks[0, 20:25, 22:24, 2] = 4  # touching connective nucleus
    masks[0, 10:12, 10:12, 3] = 1  # fully covered by epithelial below
    masks[0, 9:13, 9:13, 4] = 2
    masks[..., 5] = (masks[..., :5].sum(-1) == 0)
    types = np.array(['Breast', 'Colon'][:n] + ['Lung'] * (n - 2))
    if nested_fold is None:
        dirs = (folder, folder, folder)
    else:
        k = nested_fold
        dirs = (osp.join(folder, f'Fold {k}', 'images', f'fold{k}'),
                osp.join(folder, f'Fold {k}', 'masks', f'fold{k}'),
                osp.join(folder, f'Fold {k}', 'images', f'fold{k}'))
    for d in dirs:
        os.makedirs(d, exist_ok=True)
    np.save(osp.join(dirs[0], 'images.npy'), imgs)
    np.save(osp.join(dirs[1], 'masks.npy'), masks)
    np.save(osp.join(dirs[2], 'types.npy'), types)
    return imgs, masks


def test_pannuke_official_layout(tmp_path):
    src = str(tmp_path / 'raw')
    data = {
        k: _fake_fold(src, 2 + (k == 2), k, nested_fold=k)
        for k in (1, 2, 3)
    }
    out = str(tmp_path / 'pannuke')
    paths = convert_pannuke(src, out)
    assert sorted(paths) == ['fold1', 'fold2', 'fold3']
    assert PANNUKE_FOLD_ORDERS['213'] == (2, 1, 3)
    c1 = _load(paths['fold1'])
    assert [c['name'] for c in c1['categories']] == [
        'Neoplastic', 'Inflammatory', 'Connective', 'Dead', 'Epithelial'
    ]
    assert [i['file_name'] for i in c1['images']] == ['1_0.png', '1_1.png']
    assert [i['tissue'] for i in c1['images']] == ['Breast', 'Colon']
    maps = _maps_from_json(c1)
    inst = maps['1_0.png']
    # later channels overwrite: 5 nuclei, the fully covered 'Dead' vanishes
    cats = sorted(a['category_id'] for a in c1['annotations']
                  if a['image_id'] == c1['images'][0]['id'])
    assert cats == [1, 2, 3, 3, 5]
    np.testing.assert_array_equal(
        inst, load_instance_map(osp.join(out, 'inst_maps', '1_0.png')))
    cls = load_instance_map(osp.join(out, 'class_maps', '1_0.png'))
    assert cls[3, 3] == 1 and cls[5, 5] == 2 and cls[10, 10] == 5
    assert inst[21, 21] != inst[21, 22] and cls[21, 21] == 3
    # images: float RGB rounded to uint8, RGB order kept
    np.testing.assert_array_equal(
        load_image(osp.join(out, 'images', '1_1.png')),
        np.round(data[1][0][1]).astype(np.uint8))
    assert len(_load(paths['fold2'])['images']) == 3


def test_pannuke_flat_folder_and_errors(tmp_path):
    src = str(tmp_path / 'flat')
    _fake_fold(src, 2, 0)
    paths = convert_pannuke(src, str(tmp_path / 'o'), folds=[2], max_images=1)
    assert len(_load(paths['fold2'])['images']) == 1
    with pytest.raises(FileNotFoundError, match='PanNuke fold 1 not found'):
        find_pannuke_fold(str(tmp_path / 'nothing'), 1)
    os.makedirs(tmp_path / 'bad' / 'Fold 1')
    np.save(tmp_path / 'bad' / 'Fold 1' / 'images.npy', np.zeros(1))
    with pytest.raises(FileNotFoundError, match=r"missing \['masks.npy'"):
        find_pannuke_fold(str(tmp_path / 'bad'), 1)


XML = """<Annotations><Annotation Id="1"><Regions>
<Region Id="1"><Vertices>
<Vertex X="2" Y="2"/><Vertex X="12" Y="2"/><Vertex X="12" Y="12"/>
<Vertex X="2" Y="12"/></Vertices></Region>
<Region Id="2"><Vertices>
<Vertex X="8" Y="8"/><Vertex X="16" Y="8"/><Vertex X="16" Y="16"/>
<Vertex X="8" Y="16"/></Vertices></Region>
</Regions></Annotation></Annotations>"""


def test_monuseg_overlap_roundtrip_and_bad_xml(tmp_path):
    src = tmp_path / 'mon'
    (src / 'images').mkdir(parents=True)
    (src / 'annotations').mkdir()
    Image.fromarray(np.zeros((20, 24, 3),
                             np.uint8)).save(src / 'images' / 'a.tif')
    (src / 'annotations' / 'a.xml').write_text(XML)
    paths = convert_monuseg(str(src), str(tmp_path / 'out'), split='test')
    inst = _maps_from_json(_load(paths['test']))['a.png']
    exp = np.zeros((20, 24), np.int32)
    exp[2:13, 2:13] = 1  # boundary pixels are inside (skimage rule)
    exp[8:17, 8:17] = 2  # later region overwrites the overlap
    np.testing.assert_array_equal(inst, exp)
    (src / 'annotations' / 'b.xml').write_text('<Annotations><Region>')
    Image.fromarray(np.zeros((20, 24, 3),
                             np.uint8)).save(src / 'images' / 'b.png')
    with pytest.raises(ValueError, match='cannot parse .*b.xml'):
        convert_monuseg(str(src), str(tmp_path / 'out2'))
    (src / 'annotations' / 'b.xml').unlink()
    (src / 'annotations' / 'c.xml').write_text(XML)
    with pytest.raises(FileNotFoundError, match='no image for .*c.xml'):
        convert_monuseg(str(src), str(tmp_path / 'out3'))


def _link_subset(src_dirs, dst_root, stems, exts):
    for sub, ext in zip(src_dirs, exts):
        d = osp.join(dst_root, osp.basename(sub))
        os.makedirs(d, exist_ok=True)
        for s in stems:
            os.symlink(osp.join(sub, s + ext), osp.join(d, s + ext))


def test_monuseg_real_matches_reference_maps(shared_data, tmp_path):
    """A real MoNuSeg tile: converted map equals the shipped one."""
    root = osp.join(shared_data, 'monuseg2018_test')
    stems = sorted(
        osp.splitext(p)[0]
        for p in os.listdir(osp.join(root, 'annotations')))[-1:]
    sub = str(tmp_path / 'sub')
    _link_subset([osp.join(root, 'images'),
                  osp.join(root, 'annotations')], sub, stems, ['.png', '.xml'])
    paths = convert_monuseg(sub, str(tmp_path / 'out'), split='test')
    maps = _maps_from_json(_load(paths['test']))
    for s in stems:
        ref = load_instance_map(osp.join(root, 'inst_masks', s + '.png'))
        np.testing.assert_array_equal(maps[s + '.png'], ref)


@pytest.mark.slow
def test_monuseg_real_all_tiles_exact(shared_data):
    """All 14 tiles: 0 differing pixels with the skimage fill rule."""
    from pns_mmdet.datasets.coco_utils import polygons_to_instance_map
    root = osp.join(shared_data, 'monuseg2018_test')
    for x in sorted(glob.glob(osp.join(root, 'annotations', '*.xml'))):
        ref = load_instance_map(
            x.replace('annotations', 'inst_masks')[:-4] + '.png')
        inst = polygons_to_instance_map(parse_aperio_xml(x), ref.shape)
        np.testing.assert_array_equal(inst, ref, err_msg=x)


def test_generic_on_real_cpm15_and_pannuke25(shared_data, tmp_path):
    cpm = osp.join(shared_data, 'cpm15_train')
    sub = str(tmp_path / 'cpm')
    _link_subset([osp.join(cpm, 'images'),
                  osp.join(cpm, 'inst_masks')], sub, ['image02', 'image04'],
                 ['.png', '.png'])
    paths = convert_generic(osp.join(sub, 'images'),
                            osp.join(sub, 'inst_masks'),
                            str(tmp_path / 'cpm_out'))
    maps = _maps_from_json(_load(paths['train']))
    for s in ('image02', 'image04'):
        ref = load_instance_map(osp.join(cpm, 'inst_masks', s + '.png'))
        np.testing.assert_array_equal(maps[s + '.png'] > 0, ref > 0)
        np.testing.assert_array_equal(maps[s + '.png'], ref)
    # PanNuke-25 (already COCO upstream): via its inst/type masks
    p25 = osp.join(shared_data, 'pannuke_breast_coco25')
    paths = convert_generic(osp.join(p25, 'images'),
                            osp.join(p25, 'inst_masks'),
                            str(tmp_path / 'p25'),
                            classes=('Neoplastic', 'No-neoplastic'),
                            class_dir=osp.join(p25, 'type_masks'),
                            split_ratios=(0.6, 0.2, 0.2),
                            tissue='Breast')
    ours = [a for p in paths.values() for a in _load(p)['annotations']]
    orig = _load(osp.join(p25, 'annotations_coco.json'))
    assert [len(_load(paths[s])['images'])
            for s in ('train', 'val', 'test')] == [15, 5, 5]
    assert len(ours) == len(orig['annotations']) == 631
    assert sum(a['area'] for a in ours) == sum(a['area']
                                               for a in orig['annotations'])
    for cat in (1, 2):
        assert (sum(a['category_id'] == cat
                    for a in ours) == sum(a['category_id'] == cat
                                          for a in orig['annotations']))


def test_generic_errors(tmp_path):
    img_dir, map_dir = tmp_path / 'img', tmp_path / 'maps'
    img_dir.mkdir()
    map_dir.mkdir()
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(img_dir / 'a.png')
    np.save(map_dir / 'a.npy', np.ones((8, 9), np.int32))
    np.save(map_dir / 'b.npy', np.ones((8, 9), np.int32))
    with pytest.raises(FileNotFoundError, match='no image for .*b.npy'):
        convert_generic(str(img_dir), str(map_dir), str(tmp_path / 'o'))
    (map_dir / 'b.npy').unlink()
    np.save(map_dir / 'a.npy', np.ones((9, 8), np.int32))
    with pytest.raises(ValueError, match=r'a.png is 9x8 .*a.npy is 8x9'):
        convert_generic(str(img_dir), str(map_dir), str(tmp_path / 'o'))
    np.save(map_dir / 'a.npy', -np.ones((8, 9), np.int32))
    with pytest.raises(ValueError, match='a.npy.*negative'):
        convert_generic(str(img_dir), str(map_dir), str(tmp_path / 'o'))
    np.save(map_dir / 'a.npy', np.full((8, 9), 1.5))
    with pytest.raises(ValueError, match='a.npy.*non-integer'):
        convert_generic(str(img_dir), str(map_dir), str(tmp_path / 'o'))
    # class maps: ids beyond the class list
    np.save(map_dir / 'a.npy', np.ones((8, 9), np.int32))
    cls_dir = tmp_path / 'cls'
    cls_dir.mkdir()
    np.save(cls_dir / 'a.npy', np.full((8, 9), 3, np.int32))
    with pytest.raises(ValueError, match='class id 3 but only 2 classes'):
        convert_generic(str(img_dir),
                        str(map_dir),
                        str(tmp_path / 'o'),
                        classes=('p', 'q'),
                        class_dir=str(cls_dir))


def test_generic_include_exclude_and_scale(tmp_path):
    """Selected stems only; scale 2 doubles images and maps with ids kept
    (labels nearest), so every instance's area is exactly 4x."""
    img_dir, map_dir = tmp_path / 'img', tmp_path / 'maps'
    img_dir.mkdir()
    map_dir.mkdir()
    rng = np.random.default_rng(0)
    for stem in ('image01', 'image02', 'image10'):
        Image.fromarray(rng.integers(0, 255, (6, 7, 3),
                                     np.uint8)).save(img_dir / f'{stem}.png')
        inst = np.zeros((6, 7), np.int32)
        inst[1:3, 1:4] = 1
        inst[4:6, 2:7] = 7
        np.save(map_dir / f'{stem}.npy', inst)
    paths = convert_generic(str(img_dir), str(map_dir), str(tmp_path / 'o'),
                            include=['image0*'], exclude=['image02'],
                            scale=2.0)
    coco = _load(paths['train'])
    assert [i['file_name'] for i in coco['images']] == ['image01.png']
    assert (coco['images'][0]['height'], coco['images'][0]['width']) == (12,
                                                                          14)
    assert sorted(a['area'] for a in coco['annotations']) == [24, 40]
    out = load_instance_map(str(tmp_path / 'o' / 'inst_maps' /
                                'image01.png'))
    ref = np.load(map_dir / 'image01.npy')
    # each label pixel becomes a 2 x 2 block (ids renumbered 1..N)
    np.testing.assert_array_equal(out > 0,
                                  np.kron(ref, np.ones((2, 2), int)) > 0)
    assert load_image(str(tmp_path / 'o' / 'images' /
                          'image01.png')).shape == (12, 14, 3)
    with pytest.raises(ValueError, match=r"include=\['x\*'\].*leave none "
                       'of the 3 instance maps'):
        convert_generic(str(img_dir), str(map_dir), str(tmp_path / 'o2'),
                        include=['x*'])
    with pytest.raises(ValueError, match='scale must be > 0'):
        convert_generic(str(img_dir), str(map_dir), str(tmp_path / 'o3'),
                        scale=0)


def test_cpm17_layout_with_mat(tmp_path):
    src = tmp_path / 'cpm17'
    rng = np.random.default_rng(0)
    for split in ('train', 'test'):
        (src / split / 'Images').mkdir(parents=True)
        (src / split / 'Labels').mkdir(parents=True)
        inst = np.zeros((10, 12), np.int32)
        inst[1:4, 1:5] = 1
        inst[5:9, 6:11] = 2 if split == 'train' else 0
        Image.fromarray(rng.integers(0, 255, (10, 12, 3), np.uint8)).save(
            src / split / 'Images' / 'image_00.png')
        scipy.io.savemat(src / split / 'Labels' / 'image_00.mat',
                         {'inst_map': inst.astype(np.float64)})
    paths = convert_cpm17(str(src), str(tmp_path / 'out'))
    tr, te = _load(paths['train']), _load(paths['test'])
    assert [c['name'] for c in tr['categories']] == ['nucleus']
    assert tr['images'][0]['file_name'] == 'train_image_00.png'
    assert len(tr['annotations']) == 2 and len(te['annotations']) == 1
    assert te['images'][0]['id'] != tr['images'][0]['id']


def test_cli_make_synthetic_then_train_config(tmp_path):
    """The documented CLI writes a dataset the synthetic config can load."""
    out = str(tmp_path / 'synthetic')
    r = subprocess.run([
        sys.executable, 'tools/dataset_converters/make_synthetic.py', out,
        '--num-train', '2', '--num-val', '1', '--num-test', '1', '--size', '64'
    ],
                       cwd=REPO,
                       capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert 'train: 2 images' in r.stdout
    assert len(os.listdir(osp.join(out, 'images'))) == 4


def test_append_two_folders_into_one_split(tmp_path):
    """Kumar-style test1 + test2 into one test.json with unique ids."""
    out = str(tmp_path / 'kumar')
    for k, stem in enumerate(('t1', 't2')):
        src = tmp_path / f'test{k + 1}'
        (src / 'images').mkdir(parents=True)
        (src / 'annotations').mkdir()
        Image.fromarray(np.zeros(
            (20, 24, 3), np.uint8)).save(src / 'images' / f'{stem}.png')
        (src / 'annotations' / f'{stem}.xml').write_text(XML)
        paths = convert_monuseg(str(src), out, split='test', append=k > 0)
    coco = _load(paths['test'])
    assert [i['file_name'] for i in coco['images']] == ['t1.png', 't2.png']
    assert len({i['id'] for i in coco['images']}) == 2
    assert len({a['id'] for a in coco['annotations']}) == 4
    with pytest.raises(ValueError, match="duplicate output stem 't2'"):
        convert_monuseg(str(tmp_path / 'test2'),
                        out,
                        split='test',
                        append=True)
    with pytest.raises(ValueError, match='categories'):
        convert_generic(str(tmp_path / 'test2' / 'images'),
                        str(tmp_path / 'test2' / 'images'),
                        out,
                        classes=('a', 'b'),
                        append=True)


def test_check_dataset(synthetic_coco):
    from pns_mmdet.converters import check_coco_dataset
    stats = check_coco_dataset(synthetic_coco, 'annotations/val.json')
    coco = _load(osp.join(synthetic_coco, 'annotations/val.json'))
    assert stats['images'] == 2
    assert stats['nuclei'] == len(coco['annotations'])
    assert sum(stats['per_class'].values()) == stats['nuclei']
    assert stats['area_min'] == min(a['area'] for a in coco['annotations'])
    assert stats['points_inside'] == 1.0

