"""Overlay of nucleus outlines on the image, coloured by class."""
from typing import Sequence

import cv2
import numpy as np

__all__ = ['instance_boundaries', 'draw_instance_contours']


def instance_boundaries(inst_map: np.ndarray) -> np.ndarray:
    """Inner boundary pixels of every instance.

    A pixel is on the boundary when it belongs to an instance and one of its
    4-neighbours (or the image border) belongs to another id, so touching
    nuclei keep separate outlines.

    Args:
        inst_map (np.ndarray): (H, W) integer instance map, 0 = background.

    Returns:
        np.ndarray: (H, W) bool.
    """
    m = np.asarray(inst_map)
    padded = np.pad(m, 1, mode='constant', constant_values=-1)
    centre = padded[1:-1, 1:-1]
    diff = ((padded[:-2, 1:-1] != centre) | (padded[2:, 1:-1] != centre) |
            (padded[1:-1, :-2] != centre) | (padded[1:-1, 2:] != centre))
    return diff & (m > 0)


def draw_instance_contours(image: np.ndarray,
                           inst_map: np.ndarray,
                           labels: Sequence[int],
                           palette: Sequence[Sequence[int]],
                           thickness: int = 1) -> np.ndarray:
    """Draw every instance's outline in its class colour.

    Args:
        image (np.ndarray): (H, W, 3) uint8 **RGB** image.
        inst_map (np.ndarray): (H, W) instance map; id ``i`` has class
            ``labels[i - 1]``.
        labels (Sequence[int]): (N,) class index per instance id.
        palette (Sequence[Sequence[int]]): RGB colour per class.
        thickness (int): Outline width in pixels (grown inwards from the
            instance boundary, so neighbours stay distinguishable).

    Returns:
        np.ndarray: (H, W, 3) uint8 RGB copy of ``image`` with outlines.
    """
    image = np.asarray(image)
    inst_map = np.asarray(inst_map)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'draw_instance_contours: image must be (H, W, 3) '
                         f'uint8 RGB, got {image.shape} {image.dtype}')
    if image.shape[:2] != inst_map.shape:
        raise ValueError(f'draw_instance_contours: image is '
                         f'{image.shape[:2]} but the instance map is '
                         f'{inst_map.shape}')
    out = image.copy()
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size == 0 or inst_map.max() <= 0:
        return out
    edge = instance_boundaries(inst_map)
    if thickness > 1:
        # Grow the outline inside each instance only: erode the instance
        # interior (pixels whose whole neighbourhood has the same id).
        # Pixels with another id within `thickness` px (chessboard). The -1
        # frame makes the image border count as a boundary, as for
        # thickness 1.
        r = thickness
        kernel = np.ones((2 * r + 1, ) * 2, np.uint8)
        framed = np.pad(inst_map.astype(np.float32), r, constant_values=-1)
        same = cv2.dilate(framed, kernel) == cv2.erode(framed, kernel)
        edge = ~same[r:-r, r:-r] & (inst_map > 0)
    colours = np.asarray(palette, dtype=np.uint8)
    lut = np.zeros((len(labels) + 1, 3), dtype=np.uint8)
    lut[1:] = colours[labels]
    out[edge] = lut[inst_map[edge]]
    return out
