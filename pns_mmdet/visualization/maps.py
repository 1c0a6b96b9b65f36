"""Instance and class maps as PNG files."""
import os.path as osp
from typing import Sequence

import cv2
import numpy as np

from ..utils import atomic_write

__all__ = [
    'save_instance_png', 'save_class_png', 'class_map_from_labels', 'save_png'
]


def save_instance_png(path: str, inst_map: np.ndarray) -> None:
    """Write a 16-bit instance map PNG (0 = background, ids 1..65535).

    Args:
        path (str): Output ``.png`` path.
        inst_map (np.ndarray): (H, W) non-negative integer map.

    Raises:
        ValueError: If the map has more than 65535 ids (a 16-bit PNG cannot
            hold them; split the image into smaller regions).
    """
    inst_map = np.asarray(inst_map)
    if inst_map.ndim != 2:
        raise ValueError(f'{path}: instance map must be 2-D, got shape '
                         f'{inst_map.shape}')
    top = int(inst_map.max()) if inst_map.size else 0
    if top > np.iinfo(np.uint16).max or (inst_map.size and inst_map.min() < 0):
        raise ValueError(f'{path}: instance ids must lie in [0, 65535] for a '
                         f'16-bit PNG, got max {top}; process smaller regions')
    _imwrite(path, inst_map.astype(np.uint16))


def class_map_from_labels(inst_map: np.ndarray,
                          labels: Sequence[int]) -> np.ndarray:
    """Class map (1..C, 0 = background) of an instance map.

    Args:
        inst_map (np.ndarray): (H, W) instance map; id ``i`` has class
            ``labels[i - 1]`` (0-based).
        labels (Sequence[int]): (N,) class index per instance id.

    Returns:
        np.ndarray: (H, W) uint8 map with ``label + 1`` on each instance.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size and labels.max() > 254:
        raise ValueError('class_map_from_labels: more than 255 classes do '
                         'not fit a uint8 class map')
    lut = np.zeros(len(labels) + 1, dtype=np.uint8)
    lut[1:] = labels + 1
    return lut[np.asarray(inst_map, dtype=np.int64)]


def save_class_png(path: str, class_map: np.ndarray) -> None:
    """Write an 8-bit class map PNG (0 = background, classes 1..C)."""
    class_map = np.asarray(class_map)
    if class_map.ndim != 2:
        raise ValueError(f'{path}: class map must be 2-D, got shape '
                         f'{class_map.shape}')
    _imwrite(path, class_map.astype(np.uint8))


def save_png(path: str, arr: np.ndarray) -> None:
    """Write an array as PNG (as ``cv2.imwrite``: BGR channel order),
    atomically (temporary name, then rename)."""
    _imwrite(path, np.asarray(arr))


def _imwrite(path: str, arr: np.ndarray) -> None:
    if not path.lower().endswith('.png'):
        raise ValueError(f'{path}: expected a .png path')
    folder = osp.dirname(path)
    if folder and not osp.isdir(folder):
        raise FileNotFoundError(f'{path}: folder {folder} does not exist')
    ok, data = cv2.imencode('.png', arr)
    if not ok:
        raise OSError(f'{path}: could not encode the PNG')
    # Temporary name, then rename: a kill never leaves a truncated PNG.
    with atomic_write(path, 'wb') as f:
        f.write(data.tobytes())
