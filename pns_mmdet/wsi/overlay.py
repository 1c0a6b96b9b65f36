"""The tissue mask and the thumbnail overlay of a slide run."""
from typing import Dict, Sequence, Tuple

import cv2
import numpy as np

from ..utils import atomic_write

__all__ = ['write_tissue_and_overlay']


def write_tissue_and_overlay(thumb: np.ndarray, mask: np.ndarray, store,
                             paths: Dict[str, str],
                             scale: Tuple[float, float],
                             palette: Sequence[Sequence[int]]) -> None:
    """tissue_mask.png and thumbnail_overlay.png (nuclei drawn on the
    thumbnail, streamed from the store).

    Args:
        thumb (np.ndarray): (h, w, 3) RGB thumbnail.
        mask (np.ndarray): Tissue mask (any size, same aspect).
        store (NucleusStore): The slide's nuclei (level 0).
        paths (dict): ``tissue_mask`` and ``overlay`` output paths.
        scale (tuple[float, float]): Level-0 -> thumbnail (x, y) factors.
        palette (Sequence): RGB colour per label.
    """
    with atomic_write(paths['tissue_mask'], 'wb') as f:
        ok, buf = cv2.imencode('.png', mask.astype(np.uint8) * 255)
        f.write(buf.tobytes())
    canvas = np.ascontiguousarray(thumb[..., ::-1])  # BGR for cv2
    # The tissue outline, from the (coarser) mask resized to the
    # thumbnail.
    big = cv2.resize(mask.astype(np.uint8), canvas.shape[1::-1],
                     interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, (0, 160, 0), 1)
    sx, sy = scale
    for rec in store.iter_records():
        colour = palette[rec.label % len(palette)][::-1]
        pts = np.asarray(rec.polygon, dtype=np.float64)
        pts = np.round(pts * (sx, sy)).astype(np.int32)
        if len(pts) >= 3 and np.ptp(pts, axis=0).max() >= 2:
            cv2.polylines(canvas, [pts], True, colour, 1)
        else:  # a nucleus smaller than two thumbnail pixels: a dot
            cx, cy = int(rec.x * sx), int(rec.y * sy)
            if 0 <= cy < canvas.shape[0] and 0 <= cx < canvas.shape[1]:
                canvas[cy, cx] = colour
    with atomic_write(paths['overlay'], 'wb') as f:
        ok, buf = cv2.imencode('.png', canvas)
        f.write(buf.tobytes())
