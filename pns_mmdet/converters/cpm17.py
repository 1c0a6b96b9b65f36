"""CPM-17 converter (HoVer-Net-style release).

Layout: ``<src>/{train,test}/Images/*.png`` and
``<src>/{train,test}/Labels/*.mat`` (key ``inst_map``), one instance map per
image, no classes. Each split folder becomes ``annotations/<split>.json``.
"""
import os.path as osp
from typing import Dict, Sequence

from ..datasets.coco_writer import CocoLayoutWriter
from ..datasets.io import load_image, load_instance_map
from .generic import IMAGE_EXTS, MAP_EXTS, find_by_stem

__all__ = ['convert_cpm17']


def _subdir(parent: str, names: Sequence[str]) -> str:
    for n in names:
        if osp.isdir(osp.join(parent, n)):
            return osp.join(parent, n)
    raise FileNotFoundError(f'none of {list(names)} found in {parent}')


def convert_cpm17(src: str,
                  out_root: str,
                  splits: Sequence[str] = ('train', 'test'),
                  write_maps: bool = True) -> Dict[str, str]:
    """Convert CPM-17 ``train``/``test`` folders to the COCO layout.

    Image stems get a ``<split>_`` prefix because both splits reuse names
    like ``image_00``.

    Args:
        src (str): CPM-17 root holding the split folders.
        out_root (str): output dataset root.
        splits (Sequence[str]): split folder names to convert (missing ones
            raise). Defaults to ('train', 'test').
        write_maps (bool): write inst_maps/ and class_maps/. Defaults to
            True.

    Returns:
        dict: split -> annotation JSON path.
    """
    writer = CocoLayoutWriter(out_root, ('nucleus', ), write_maps)
    for split in splits:
        sdir = osp.join(src, split)
        if not osp.isdir(sdir):
            raise FileNotFoundError(f'CPM-17 split folder not found: {sdir}')
        images = find_by_stem(_subdir(sdir, ('Images', 'images')), IMAGE_EXTS)
        labels = find_by_stem(_subdir(sdir, ('Labels', 'labels')), MAP_EXTS)
        if not labels:
            raise FileNotFoundError(f'no label files in {sdir}/Labels')
        for stem in sorted(labels):
            if stem not in images:
                raise FileNotFoundError(
                    f'no image for label {labels[stem]} in {sdir}/Images')
            img = load_image(images[stem])
            inst = load_instance_map(labels[stem])
            if img.shape[:2] != inst.shape:
                raise ValueError(
                    f'size mismatch: image {images[stem]} is '
                    f'{img.shape[1]}x{img.shape[0]} (WxH) but label '
                    f'{labels[stem]} is {inst.shape[1]}x{inst.shape[0]}')
            writer.add(f'{split}_{stem}',
                       img,
                       inst,
                       split=split,
                       name=labels[stem])
    return writer.save()
