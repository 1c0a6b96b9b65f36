"""Generic converter: a folder of images + a folder of instance maps.

Maps (16-bit PNG, TIFF, ``.npy``, ``.npz``, ``.mat``) are matched to images
by file stem (optionally after stripping a suffix such as ``_mask``);
optional class maps are matched the same way.
"""
import fnmatch
import glob
import os.path as osp
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from ..datasets.coco_writer import CocoLayoutWriter, split_stems
from ..datasets.io import load_image, load_instance_map

__all__ = [
    'convert_generic', 'find_by_stem', 'rescale_pair', 'IMAGE_EXTS',
    'MAP_EXTS'
]

IMAGE_EXTS = ('.png', '.tif', '.tiff', '.jpg', '.jpeg', '.bmp')
MAP_EXTS = ('.png', '.tif', '.tiff', '.npy', '.npz', '.mat')


def find_by_stem(folder: str,
                 exts: Sequence[str],
                 suffix: str = '') -> Dict[str, str]:
    """Map stem -> path for files in ``folder`` with one of ``exts``.

    Args:
        folder (str): directory (not searched recursively).
        exts (Sequence[str]): accepted lower-case extensions with the dot.
        suffix (str): stripped from the end of each stem when present
            (e.g. ``'_mask'``). Defaults to ''.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: two files share a stem.
    """
    if not osp.isdir(folder):
        raise FileNotFoundError(f'directory not found: {folder}')
    out: Dict[str, str] = {}
    for path in sorted(glob.glob(osp.join(folder, '*'))):
        stem, ext = osp.splitext(osp.basename(path))
        if ext.lower() not in exts or not osp.isfile(path):
            continue
        if suffix and stem.endswith(suffix):
            stem = stem[:-len(suffix)]
        if stem in out:
            raise ValueError(f'two files with stem {stem!r} in {folder}: '
                             f'{osp.basename(out[stem])} and '
                             f'{osp.basename(path)}')
        out[stem] = path
    return out


def convert_generic(image_dir: str,
                    inst_dir: str,
                    out_root: str,
                    classes: Sequence[str] = ('nucleus', ),
                    class_dir: Optional[str] = None,
                    split: str = 'train',
                    split_ratios: Optional[Sequence[float]] = None,
                    seed: int = 0,
                    tissue: Optional[str] = None,
                    map_suffix: str = '',
                    class_suffix: str = '',
                    map_key: Optional[str] = None,
                    class_key: Optional[str] = None,
                    write_maps: bool = True,
                    append: bool = False,
                    include: Optional[Sequence[str]] = None,
                    exclude: Optional[Sequence[str]] = None,
                    scale: float = 1.0) -> Dict[str, str]:
    """Convert matched images / instance maps (/ class maps) to COCO.

    Args:
        image_dir (str): folder of RGB images.
        inst_dir (str): folder of instance maps; every map needs an image
            with the same stem.
        out_root (str): output dataset root.
        classes (Sequence[str]): class names; class-map value k is
            ``classes[k - 1]``. Defaults to ('nucleus',).
        class_dir (str, optional): folder of class maps (same stems).
            Without it every nucleus is class 1.
        split (str): split name when ``split_ratios`` is None. Defaults to
            'train'.
        split_ratios (Sequence[float], optional): (train, val, test)
            fractions for a seeded random split. Defaults to None.
        seed (int): split seed. Defaults to 0.
        tissue (str, optional): tissue name stored for every image.
        map_suffix (str): suffix stripped from instance-map stems, e.g.
            ``'_mask'``. Defaults to ''.
        class_suffix (str): same for class maps. Defaults to ''.
        map_key (str, optional): array key in .mat/.npz instance maps.
        class_key (str, optional): array key in .mat/.npz class maps
            (default: ``type_map``/``class_map``/``inst_type``...).
        write_maps (bool): write inst_maps/ and class_maps/. Defaults to
            True.
        append (bool): add to existing split files in ``out_root`` (see
            :class:`CocoLayoutWriter`). Defaults to False.
        include (Sequence[str], optional): shell patterns (``fnmatch``) of
            instance-map stems to convert; others are skipped. Defaults to
            None (all).
        exclude (Sequence[str], optional): patterns of stems to skip.
        scale (float): resize factor applied to every converted image and
            its maps (:func:`rescale_pair`), e.g. 2.0 to bring 20x tiles to
            the 40x of the rest of a dataset. Defaults to 1.0.

    Returns:
        dict: split -> annotation JSON path.

    Raises:
        FileNotFoundError: a map without an image (or class map).
        ValueError: size mismatch (naming both files and sizes), invalid
            maps, class ids outside 1..len(classes), a non-positive
            ``scale``, or ``include``/``exclude`` leaving no map.
    """
    if not scale > 0:
        raise ValueError(f'scale must be > 0, got {scale!r}')
    maps = find_by_stem(inst_dir, MAP_EXTS, map_suffix)
    if not maps:
        raise FileNotFoundError(f'no instance maps ({", ".join(MAP_EXTS)}) '
                                f'found in {inst_dir}')
    maps = _select_stems(maps, include, exclude, inst_dir)
    images = find_by_stem(image_dir, IMAGE_EXTS)
    cls_maps = (find_by_stem(class_dir, MAP_EXTS, class_suffix)
                if class_dir else None)
    for stem, mpath in maps.items():
        if stem not in images:
            raise FileNotFoundError(
                f'no image for instance map {mpath}: expected {stem}.<'
                f'{"|".join(e[1:] for e in IMAGE_EXTS)}> in {image_dir}')
        if cls_maps is not None and stem not in cls_maps:
            raise FileNotFoundError(f'no class map for {mpath} in '
                                    f'{class_dir}')
    assignment = split_stems(list(maps), split_ratios, seed, default=split)
    writer = CocoLayoutWriter(out_root, classes, write_maps, append)
    for stem in sorted(maps):
        inst = load_instance_map(maps[stem], key=map_key)
        img = load_image(images[stem])
        if img.shape[:2] != inst.shape:
            raise ValueError(
                f'size mismatch: image {images[stem]} is '
                f'{img.shape[1]}x{img.shape[0]} (WxH) but instance map '
                f'{maps[stem]} is {inst.shape[1]}x{inst.shape[0]}')
        cls = None
        if cls_maps is not None:
            cls = _load_class_map(cls_maps[stem], class_key)
            if cls.shape != inst.shape:
                raise ValueError(
                    f'size mismatch: class map {cls_maps[stem]} is '
                    f'{cls.shape[1]}x{cls.shape[0]} (WxH) but instance map '
                    f'{maps[stem]} is {inst.shape[1]}x{inst.shape[0]}')
            if cls.max() > len(classes):
                raise ValueError(
                    f'{cls_maps[stem]}: class id {int(cls.max())} but only '
                    f'{len(classes)} classes given ({list(classes)})')
        if scale != 1.0:
            img, inst, cls = rescale_pair(img, inst, cls, scale)
        writer.add(stem,
                   img,
                   inst,
                   split=assignment[stem],
                   class_map=cls,
                   tissue=tissue,
                   name=maps[stem])
    return writer.save()


def _select_stems(maps: Dict[str, str], include: Optional[Sequence[str]],
                  exclude: Optional[Sequence[str]],
                  folder: str) -> Dict[str, str]:
    """The entries of ``maps`` whose stem matches ``include`` (any pattern;
    all when None) and no ``exclude`` pattern."""
    kept = {
        stem: path
        for stem, path in maps.items()
        if (include is None or any(fnmatch.fnmatchcase(stem, p)
                                   for p in include)) and not any(
                                       fnmatch.fnmatchcase(stem, p)
                                       for p in (exclude or ()))
    }
    if not kept:
        raise ValueError(f'include={list(include or [])} / exclude='
                         f'{list(exclude or [])} leave none of the '
                         f'{len(maps)} instance maps in {folder} (stems: '
                         f'{sorted(maps)[:5]}...)')
    return kept


def rescale_pair(image: np.ndarray, inst_map: np.ndarray,
                 class_map: Optional[np.ndarray], scale: float):
    """Resize an image and its label maps by ``scale``.

    The image is interpolated (area when shrinking, bicubic when
    enlarging); the label maps take the nearest label, so ids stay exact.
    Output size: ``round(H * scale) x round(W * scale)``.

    Args:
        image (np.ndarray): (H, W, 3) image.
        inst_map (np.ndarray): (H, W) instance ids.
        class_map (np.ndarray, optional): (H, W) class ids.
        scale (float): resize factor (> 0).

    Returns:
        tuple: (image, inst_map, class_map or None), resized.
    """
    h, w = inst_map.shape
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    if image.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        image = image.astype(np.float32)  # dtypes cv2.resize accepts
    image = cv2.resize(image, size, interpolation=interp)

    def labels(m):
        # Nearest with half-pixel centres, on the image's own output grid
        # (ids copied, never interpolated).
        return cv2.resize(m, size, interpolation=cv2.INTER_NEAREST_EXACT)

    return (image, labels(inst_map),
            None if class_map is None else labels(class_map))


_CLASS_KEYS = ('type_map', 'class_map', 'inst_type', 'types', 'class',
               'classes', 'label', 'map')


def _load_class_map(path: str, key: Optional[str]):
    """Read a class map (same formats and checks as instance maps)."""
    ext = osp.splitext(path)[1].lower()
    if ext in ('.mat', '.npz') and key is None:
        import numpy as np
        if ext == '.mat':
            import scipy.io
            keys: List[str] = list(scipy.io.whosmat(path))
            keys = [k[0] for k in keys]
        else:
            with np.load(path) as z:
                keys = list(z.files)
        key = next((k for k in _CLASS_KEYS if k in keys), None)
        if key is None:
            raise KeyError(f'{path}: no class-map key found; tried '
                           f'{list(_CLASS_KEYS)}, available keys: '
                           f'{sorted(keys)}. Pass class_key=...')
    return load_instance_map(path, key=key)
