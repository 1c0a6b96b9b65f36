"""Writer of the pns_mmdet COCO layout (see docs/design.md)::

    <out_root>/images/<stem>.png           RGB uint8
    <out_root>/annotations/<split>.json    COCO, compressed RLE masks
    <out_root>/inst_maps/<stem>.png        16-bit instance ids (optional)
    <out_root>/class_maps/<stem>.png       uint8 class ids (optional)

Every converter and the synthetic generator go through
:func:`instance_map_to_coco` / :class:`CocoLayoutWriter`, so decoding the
written annotations reproduces the instance maps pixel for pixel.

Every file is written to a temporary name and renamed when complete
(:func:`pns_mmdet.utils.atomic_write`), and the annotation JSON files come
last: a converter killed at any moment leaves no truncated PNG or JSON under
a final name, and no annotation file listing images not yet written.
"""
import json
import os
import os.path as osp
from typing import Dict, Iterable, List, Optional, Sequence, Union

import cv2
import numpy as np

from ..utils import atomic_write
from .coco_utils import (instance_classes_from_class_map,
                         instance_map_to_annotations)
from .io import check_instance_map, to_uint8_rgb

__all__ = [
    'CocoLayoutWriter', 'instance_map_to_coco', 'split_stems',
    'describe_splits'
]


class CocoLayoutWriter:
    """Accumulate images + instance maps and write the COCO layout.

    Image ids and annotation ids are unique across all splits of one writer
    (1-based, in insertion order).

    Args:
        out_root (str): output dataset root.
        classes (Sequence[str]): category names; category id k+1 is
            ``classes[k]``, class-map value k+1 as well.
        write_maps (bool): also write ``inst_maps/`` and ``class_maps/``.
            Defaults to True.
        append (bool): add to the annotation files already in ``out_root``
            (e.g. Kumar's test1 and test2 folders into one ``test.json``):
            their images are kept, new ids continue after the existing
            ones, and a stem that already exists is an error. Defaults to
            False (existing split files are overwritten).
    """

    def __init__(self,
                 out_root: str,
                 classes: Sequence[str],
                 write_maps: bool = True,
                 append: bool = False) -> None:
        if len(classes) == 0:
            raise ValueError('classes must name at least one category')
        if len(set(classes)) != len(classes):
            raise ValueError(f'duplicate class names in {list(classes)}')
        if len(classes) > 255:
            raise ValueError('at most 255 classes fit in uint8 class maps')
        self.out_root = out_root
        self.classes = tuple(classes)
        self.write_maps = write_maps
        self.splits: Dict[str, dict] = {}
        self._next_img_id = 1
        self._next_ann_id = 1
        self._stems: Dict[str, str] = {}
        self._existing: Dict[str, dict] = {}
        if append:
            self._load_existing()
        os.makedirs(osp.join(out_root, 'images'), exist_ok=True)
        os.makedirs(osp.join(out_root, 'annotations'), exist_ok=True)
        if write_maps:
            os.makedirs(osp.join(out_root, 'inst_maps'), exist_ok=True)
            os.makedirs(osp.join(out_root, 'class_maps'), exist_ok=True)

    def _load_existing(self) -> None:
        ann_dir = osp.join(self.out_root, 'annotations')
        if not osp.isdir(ann_dir):
            return
        for name in sorted(os.listdir(ann_dir)):
            if not name.endswith('.json'):
                continue
            path = osp.join(ann_dir, name)
            try:
                with open(path) as f:
                    coco = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f'cannot append to malformed JSON {path}: '
                                 f'{e}') from e
            names = tuple(c['name'] for c in sorted(coco.get('categories', []),
                                                    key=lambda c: c['id']))
            if names != self.classes:
                raise ValueError(f'cannot append to {path}: its categories '
                                 f'{list(names)} differ from '
                                 f'{list(self.classes)}')
            self._existing[name[:-5]] = coco
            for im in coco['images']:
                self._stems[osp.splitext(im['file_name'])[0]] = path
                self._next_img_id = max(self._next_img_id, im['id'] + 1)
            for a in coco['annotations']:
                self._next_ann_id = max(self._next_ann_id, a['id'] + 1)

    def add(self,
            stem: str,
            image: np.ndarray,
            inst_map: np.ndarray,
            split: str = 'train',
            inst_classes: Optional[Dict[int, int]] = None,
            class_map: Optional[np.ndarray] = None,
            tissue: Optional[str] = None,
            name: Optional[str] = None) -> int:
        """Write one image and queue its annotations.

        Args:
            stem (str): output file stem (``images/<stem>.png``); unique
                within the writer.
            image (np.ndarray): (H, W, 3) RGB (any dtype accepted by
                :func:`to_uint8_rgb`).
            inst_map (np.ndarray): (H, W) instance ids, 0 = background.
            split (str): split name (``annotations/<split>.json``).
                Defaults to 'train'.
            inst_classes (dict, optional): instance id -> class id (1..C).
            class_map (np.ndarray, optional): (H, W) class ids; each
                instance takes the majority class under it. Ignored when
                ``inst_classes`` is given. With neither, every instance is
                class 1.
            tissue (str, optional): tissue name stored in the image entry.
            name (str, optional): source name for error messages.

        Returns:
            int: the COCO image id.
        """
        name = name or stem
        if stem in self._stems:
            raise ValueError(f'duplicate output stem {stem!r} (from {name} '
                             f'and {self._stems[stem]})')
        self._stems[stem] = name
        image = to_uint8_rgb(image, name)
        inst_map = check_instance_map(inst_map, name)
        h, w = inst_map.shape
        if image.shape[:2] != (h, w):
            raise ValueError(f'{name}: image size {image.shape[1]}x'
                             f'{image.shape[0]} (WxH) differs from the '
                             f'instance map size {w}x{h}')
        if inst_classes is None and class_map is not None:
            inst_classes = instance_classes_from_class_map(
                inst_map, np.asarray(class_map), name)
        if inst_classes is not None:
            present = set(np.unique(inst_map).tolist()) - {0}
            bad = {
                i: c
                for i, c in inst_classes.items()
                if i in present and not 1 <= c <= len(self.classes)
            }
            if bad:
                raise ValueError(
                    f'{name}: class ids {sorted(set(bad.values()))} out of '
                    f'range 1..{len(self.classes)} for classes '
                    f'{list(self.classes)}')
        img_id = self._next_img_id
        self._next_img_id += 1
        anns = instance_map_to_annotations(inst_map, img_id, self._next_ann_id,
                                           inst_classes)
        self._next_ann_id += len(anns)
        file_name = f'{stem}.png'
        # cv2 writes BGR; PNG keeps the RGB values exactly.
        _write_png(osp.join(self.out_root, 'images', file_name),
                   np.ascontiguousarray(image[..., ::-1]), name)
        if self.write_maps:
            self._write_maps(stem, inst_map, anns)
        entry = dict(id=img_id, file_name=file_name, height=h, width=w)
        if tissue is not None:
            entry['tissue'] = str(tissue)
        split_data = self.splits.setdefault(split, dict(images=[], anns=[]))
        split_data['images'].append(entry)
        split_data['anns'].extend(anns)
        return img_id

    def _write_maps(self, stem: str, inst_map: np.ndarray,
                    anns: List[dict]) -> None:
        out_inst = inst_map
        if inst_map.max() > 65535:
            raise ValueError(f'{stem}: instance ids exceed 65535 and do not '
                             'fit a 16-bit PNG')
        cls_map = np.zeros(inst_map.shape, np.uint8)
        if anns:
            lut = np.zeros(int(inst_map.max()) + 1, np.uint8)
            for a in anns:
                lut[a['inst_id']] = a['category_id']
            cls_map = lut[inst_map]
        _write_png(osp.join(self.out_root, 'inst_maps', f'{stem}.png'),
                   out_inst.astype(np.uint16), stem)
        _write_png(osp.join(self.out_root, 'class_maps', f'{stem}.png'),
                   cls_map, stem)

    def save(self) -> Dict[str, str]:
        """Write ``annotations/<split>.json`` for every split.

        Returns:
            dict: split -> JSON path.
        """
        categories = [
            dict(id=i + 1, name=n, supercategory='nucleus')
            for i, n in enumerate(self.classes)
        ]
        paths = {}
        for split, data in self.splits.items():
            old = self._existing.get(split, dict(images=[], annotations=[]))
            coco = dict(info=dict(description='pns_mmdet nucleus dataset',
                                  version='1.0'),
                        images=old['images'] + data['images'],
                        annotations=old['annotations'] + data['anns'],
                        categories=categories)
            path = osp.join(self.out_root, 'annotations', f'{split}.json')
            # fsync: the JSON is what marks the conversion as done.
            with atomic_write(path, 'w') as f:
                json.dump(coco, f)
            paths[split] = path
        return paths


def _write_png(path: str, arr: np.ndarray, name: str) -> None:
    """Encode ``arr`` (as ``cv2.imwrite``: BGR) and write it atomically.

    No fsync per file (thousands of tiles; a kill cannot truncate them
    anyway, only a power loss could, and the JSON written last is synced).
    """
    ok, data = cv2.imencode('.png', arr)
    if not ok:
        raise OSError(f'could not encode {path} (from {name})')
    with atomic_write(path, 'wb', fsync=False) as f:
        f.write(data.tobytes())


def instance_map_to_coco(samples: Iterable[dict],
                         out_root: str,
                         classes: Sequence[str] = ('nucleus', ),
                         split: str = 'train',
                         write_maps: bool = True) -> Dict[str, str]:
    """Convert (image, instance map[, classes]) samples to the COCO layout.

    Args:
        samples (Iterable[dict]): each with ``stem`` (str), ``image``
            ((H, W, 3) RGB array), ``inst_map`` ((H, W) ids) and optionally
            ``inst_classes`` (dict id -> class 1..C), ``class_map`` ((H, W)
            class ids), ``tissue`` (str), ``split`` (overrides ``split``)
            and ``name`` (source name for errors).
        out_root (str): output root.
        classes (Sequence[str]): category names. Defaults to ('nucleus',).
        split (str): default split. Defaults to 'train'.
        write_maps (bool): also write inst_maps/ and class_maps/. Defaults
            to True.

    Returns:
        dict: split -> written annotation JSON path.
    """
    writer = CocoLayoutWriter(out_root, classes, write_maps)
    for s in samples:
        writer.add(s['stem'],
                   s['image'],
                   s['inst_map'],
                   split=s.get('split', split),
                   inst_classes=s.get('inst_classes'),
                   class_map=s.get('class_map'),
                   tissue=s.get('tissue'),
                   name=s.get('name'))
    return writer.save()


def split_stems(stems: Sequence[str],
                ratios: Union[Sequence[float], None],
                seed: int = 0,
                names: Sequence[str] = ('train', 'val', 'test'),
                default: str = 'train') -> Dict[str, str]:
    """Assign stems to splits, deterministically for a seed.

    Args:
        stems (Sequence[str]): all stems.
        ratios (Sequence[float], optional): fractions per split name (e.g.
            (0.6, 0.2, 0.2)); None puts everything into ``default``.
        seed (int): permutation seed. Defaults to 0.
        names (Sequence[str]): split names matching ``ratios``.
        default (str): split when ``ratios`` is None. Defaults to 'train'.

    Returns:
        dict: stem -> split. Every split but the first gets
        ``round(ratio * n)`` stems; the first takes the rest.
    """
    stems = sorted(stems)
    if ratios is None:
        return {s: default for s in stems}
    if len(ratios) != len(names):
        raise ValueError(f'{len(ratios)} split ratios given for splits '
                         f'{list(names)}')
    if any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ValueError(f'split ratios must be >= 0 with a positive sum, '
                         f'got {list(ratios)}')
    total = float(sum(ratios))
    n = len(stems)
    counts = [int(round(r / total * n)) for r in ratios]
    counts[0] = n - sum(counts[1:])
    if counts[0] < 0:
        raise ValueError(f'split ratios {list(ratios)} leave no room for '
                         f'{names[0]} with {n} images')
    order = np.random.default_rng(seed).permutation(n)
    out = {}
    start = 0
    for name, cnt in zip(names, counts):
        for k in order[start:start + cnt]:
            out[stems[k]] = name
        start += cnt
    return out


def describe_splits(paths: Dict[str, str]) -> str:
    """One line per written split: images, nuclei and JSON path."""
    lines = []
    for split in sorted(paths):
        with open(paths[split]) as f:
            d = json.load(f)
        lines.append(f'{split}: {len(d["images"])} images, '
                     f'{len(d["annotations"])} nuclei -> {paths[split]}')
    return '\n'.join(lines)
