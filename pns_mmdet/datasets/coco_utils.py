"""COCO helpers for nucleus data: exact RLE encoding from instance maps,
RLE validation and decoding back to instance maps (polygon filling with
scikit-image ``draw.polygon`` semantics: :mod:`.polygon_fill`).

All masks are in the image frame: row = y, column = x, pixel (x, y) is the
pixel in column x, row y.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pycocotools.mask as mask_utils
from scipy import ndimage

# Re-exported: the converters and tests find polygon filling here.
from .polygon_fill import fill_polygon, polygons_to_instance_map

__all__ = [
    'MAX_IMAGE_PIXELS', 'check_image_size', 'encode_instance_rle',
    'rle_counts', 'validate_segmentation',
    'instance_map_to_annotations', 'annotations_to_instance_map',
    'decode_segmentation', 'fill_polygon', 'polygons_to_instance_map',
    'instance_classes_from_class_map', 'segmentation_to_pixels'
]


#: Largest image (H x W) an annotation file may declare: twice Pillow's
#: decompression-bomb warning limit, where Pillow refuses to decode the
#: image itself. A mask of that size is decoded as H x W bytes, so a header
#: claiming 200000 x 200000 would otherwise ask for 40 GB.
MAX_IMAGE_PIXELS = 2 * 89_478_485


def check_image_size(height, width, where: str) -> Tuple[int, int]:
    """Validate the ``height``/``width`` of a COCO image entry.

    Args:
        height: The entry's ``height`` (int, or a float with an integral
            value).
        width: The entry's ``width``.
        where (str): Context for messages (file and image id).

    Returns:
        tuple[int, int]: (H, W).

    Raises:
        ValueError: Not positive integers, or more than
            :data:`MAX_IMAGE_PIXELS` pixels.
    """
    out = []
    for name, v in (('height', height), ('width', width)):
        ok = (isinstance(v, (int, float, np.integer, np.floating))
              and not isinstance(v, bool) and np.isfinite(v)
              and float(v) == int(v) and int(v) > 0)
        if not ok:
            raise ValueError(f'{where}: "{name}" must be a positive integer, '
                             f'got {v!r}')
        out.append(int(v))
    if out[0] * out[1] > MAX_IMAGE_PIXELS:
        raise ValueError(
            f'{where}: image size {out[1]}x{out[0]} (WxH) exceeds '
            f'{MAX_IMAGE_PIXELS} pixels (a corrupt entry or a decompression '
            'bomb); tile such images before annotating them')
    return out[0], out[1]


def encode_instance_rle(ys: np.ndarray, xs: np.ndarray, height: int,
                        width: int) -> dict:
    """Compressed COCO RLE of a set of pixels, without a full-size mask.

    COCO RLE counts runs in column-major order, alternating background and
    foreground, starting with background. Encoding from the pixel list keeps
    the cost proportional to the nucleus size, not the image size.

    Args:
        ys (np.ndarray): (K,) row indices of the foreground pixels.
        xs (np.ndarray): (K,) column indices, same length as ``ys``.
        height (int): image height H.
        width (int): image width W.

    Returns:
        dict: ``{'size': [H, W], 'counts': str}`` (compressed, pycocotools
        encoding; identical to ``pycocotools.mask.encode``).
    """
    pos = np.unique(
        np.asarray(xs, np.int64) * height + np.asarray(ys, np.int64))
    if pos.size == 0:
        counts = [height * width]
    else:
        # Break the sorted positions into runs of consecutive indices.
        breaks = np.flatnonzero(np.diff(pos) != 1)
        starts = np.concatenate([pos[:1], pos[breaks + 1]])
        ends = np.concatenate([pos[breaks], pos[-1:]]) + 1  # exclusive
        gaps = starts - np.concatenate([[0], ends[:-1]])
        runs = ends - starts
        counts = np.empty(2 * len(starts), np.int64)
        counts[0::2] = gaps
        counts[1::2] = runs
        counts = counts.tolist()
        tail = height * width - int(ends[-1])
        if tail:
            counts.append(tail)
    rle = mask_utils.frPyObjects({
        'size': [height, width],
        'counts': counts
    }, height, width)
    return {'size': [height, width], 'counts': rle['counts'].decode('ascii')}


def rle_counts(counts: Union[str, bytes]) -> np.ndarray:
    """Decode the run lengths of a compressed COCO RLE string.

    Mirrors pycocotools' ``rleFrString`` (6-bit chunks offset by 48, with a
    continuation bit, sign extension and delta coding from the third count
    on) so malformed strings can be detected before pycocotools decodes
    them: it does not check them and returns garbage masks instead.

    Args:
        counts (str | bytes): the ``counts`` string.

    Returns:
        np.ndarray: (M,) int64 run lengths.

    Raises:
        ValueError: invalid characters or a truncated final number.
    """
    if isinstance(counts, str):
        counts = counts.encode('ascii', errors='replace')
    v = np.frombuffer(counts, np.uint8).astype(np.int64) - 48
    if v.size == 0:
        raise ValueError('empty RLE counts string')
    if (v < 0).any() or (v > 63).any():
        raise ValueError('RLE counts string has characters outside the '
                         'COCO alphabet')
    ends = np.flatnonzero((v & 0x20) == 0)
    if ends.size == 0 or ends[-1] != v.size - 1:
        raise ValueError('RLE counts string is truncated')
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 7:
        raise ValueError('RLE counts string encodes an out-of-range count')
    offset = np.arange(v.size) - np.repeat(starts, lengths)
    x = np.add.reduceat((v & 0x1f) << (5 * offset), starts)
    neg = (v[ends] & 0x10) != 0
    x[neg] -= np.left_shift(1, 5 * lengths[neg])
    c = x.copy()
    # pycocotools adds counts[m-2] for m > 2: two interleaved running sums.
    c[1::2] = np.cumsum(x[1::2])
    c[2::2] = np.cumsum(x[2::2])
    return c


def validate_segmentation(seg, height: int, width: int, where: str) -> None:
    """Check a COCO ``segmentation`` without decoding it.

    Accepts compressed RLE (``counts`` str), uncompressed RLE (``counts``
    list) and polygons (list of flat [x0, y0, x1, y1, ...] lists).

    Args:
        seg: the segmentation field.
        height (int): image height the mask must have.
        width (int): image width.
        where (str): context for messages, e.g. ``"ann.json: image 3,
            annotation 17"``.

    Raises:
        ValueError: malformed segmentation, naming ``where``.
    """
    if isinstance(seg, dict):
        size = seg.get('size')
        counts = seg.get('counts')
        if (not isinstance(size, (list, tuple)) or len(size) != 2
                or counts is None):
            raise ValueError(f'{where}: RLE needs "size" [h, w] and "counts"'
                             f', got keys {sorted(seg.keys())}')
        if not all(isinstance(v, (int, np.integer))
                   and not isinstance(v, bool) for v in size):
            raise ValueError(f'{where}: RLE size must be two integers, got '
                             f'{list(size)}')
        if [int(size[0]), int(size[1])] != [int(height), int(width)]:
            raise ValueError(f'{where}: RLE size {list(size)} does not match '
                             f'the image size [{height}, {width}]')
        if isinstance(counts, (str, bytes)):
            try:
                c = rle_counts(counts)
            except ValueError as e:
                raise ValueError(f'{where}: malformed RLE: {e}') from e
        elif isinstance(counts, (list, tuple)):
            if not all(isinstance(v, (int, np.integer))
                       and not isinstance(v, bool) for v in counts):
                raise ValueError(f'{where}: malformed RLE counts list: '
                                 'every run length must be an integer')
            try:
                c = np.asarray(counts, np.int64)
            except (TypeError, ValueError, OverflowError) as e:
                raise ValueError(f'{where}: malformed RLE counts list: {e}')
            if c.ndim != 1 or c.size == 0:
                raise ValueError(f'{where}: RLE counts must be a flat, '
                                 'non-empty list')
        else:
            raise ValueError(f'{where}: RLE counts must be str or list, got '
                             f'{type(counts).__name__}')
        if (c < 0).any() or int(c.sum()) != height * width:
            raise ValueError(
                f'{where}: malformed RLE: run lengths sum to {int(c.sum())} '
                f'(negative runs: {int((c < 0).sum())}), expected '
                f'{height}x{width}={height * width}')
    elif isinstance(seg, (list, tuple)):
        if len(seg) == 0:
            raise ValueError(f'{where}: empty polygon list')
        for poly in seg:
            if (not isinstance(poly, (list, tuple)) or len(poly) < 6
                    or len(poly) % 2):
                raise ValueError(f'{where}: each polygon must be a flat list '
                                 'of >= 3 (x, y) pairs')
            if not all(isinstance(v, (int, float, np.integer, np.floating))
                       and not isinstance(v, bool) for v in poly):
                raise ValueError(f'{where}: non-numeric polygon coordinate')
            # pycocotools casts coordinates to int in C: NaN, inf or values
            # beyond int32 would be undefined behaviour there.
            xy = np.asarray(poly, np.float64)
            if not np.isfinite(xy).all() or np.abs(xy).max() > 2**30:
                raise ValueError(f'{where}: polygon coordinates must be '
                                 'finite and within +-2^30 pixels')
    else:
        raise ValueError(f'{where}: segmentation must be an RLE dict or a '
                         f'polygon list, got {type(seg).__name__}')


def decode_segmentation(seg, height: int, width: int) -> np.ndarray:
    """Decode any COCO segmentation to an (H, W) uint8 mask."""
    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    elif isinstance(seg['counts'], list):
        rle = mask_utils.frPyObjects(seg, height, width)
    else:
        rle = dict(seg)
        if isinstance(rle['counts'], str):
            rle['counts'] = rle['counts'].encode('ascii')
    return mask_utils.decode(rle)


def segmentation_to_pixels(seg, height: int,
                           width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Foreground pixels of a COCO segmentation without a full-size mask.

    Polygons and uncompressed RLE are first turned into compressed RLE by
    pycocotools (cheap, no decoding); the runs are then expanded directly
    into pixel coordinates, so the cost follows the nucleus size.

    Args:
        seg: compressed/uncompressed RLE dict or polygon list.
        height (int): image height H.
        width (int): image width W.

    Returns:
        tuple: (ys, xs) int64 row and column indices, column-major order.

    Raises:
        ValueError: the run lengths do not cover exactly H x W pixels.
    """
    if isinstance(seg, list):
        polys = [
            p.tolist() if isinstance(p, np.ndarray) else list(p) for p in seg
        ]
        counts = mask_utils.merge(mask_utils.frPyObjects(polys, height,
                                                         width))['counts']
    elif isinstance(seg['counts'], list):
        counts = mask_utils.frPyObjects(seg, height, width)['counts']
    else:
        counts = seg['counts']
    runs = rle_counts(counts)
    if (runs < 0).any() or int(runs.sum()) != height * width:
        raise ValueError(f'RLE run lengths sum to {int(runs.sum())}, '
                         f'expected {height}x{width}')
    ends = np.cumsum(runs)
    starts = ends - runs
    fg_start, fg_len = starts[1::2], runs[1::2]
    total = int(fg_len.sum())
    # Flat column-major indices of every foreground run, concatenated.
    offsets = np.repeat(
        fg_start - np.concatenate([[0], np.cumsum(fg_len)[:-1]]), fg_len)
    idx = offsets + np.arange(total)
    return idx % height, idx // height


def instance_classes_from_class_map(inst_map: np.ndarray,
                                    class_map: np.ndarray,
                                    name: str = 'map') -> Dict[int, int]:
    """Class of every instance: the majority non-zero class under it.

    Args:
        inst_map (np.ndarray): (H, W) instance ids.
        class_map (np.ndarray): (H, W) class ids, 0 = background.
        name (str): used in error messages.

    Returns:
        dict: instance id -> class id (>= 1).

    Raises:
        ValueError: shapes differ, or an instance covers only class 0.
    """
    if inst_map.shape != class_map.shape:
        raise ValueError(f'{name}: class map shape {class_map.shape} differs '
                         f'from instance map shape {inst_map.shape}')
    fg = (inst_map > 0) & (class_map > 0)
    ids = inst_map[fg].astype(np.int64)
    cls = class_map[fg].astype(np.int64)
    out: Dict[int, int] = {}
    if ids.size:
        n_cls = int(cls.max()) + 1
        # Joint histogram of (instance, class) in one pass.
        uniq, inv = np.unique(ids, return_inverse=True)
        hist = np.bincount(inv * n_cls + cls,
                           minlength=len(uniq) * n_cls).reshape(-1, n_cls)
        best = hist.argmax(1)
        out = {int(i): int(c) for i, c in zip(uniq, best)}
    missing = set(np.unique(inst_map).tolist()) - {0} - set(out)
    if missing:
        raise ValueError(f'{name}: instances {sorted(missing)[:10]} have no '
                         'class (class map is 0 under them)')
    return out


def instance_map_to_annotations(
        inst_map: np.ndarray,
        image_id: int,
        start_ann_id: int,
        classes: Optional[Dict[int, int]] = None) -> List[dict]:
    """COCO annotations (exact compressed RLE) for every instance of a map.

    Args:
        inst_map (np.ndarray): (H, W) integer ids, 0 = background.
        image_id (int): COCO image id.
        start_ann_id (int): id of the first annotation; later ones follow.
        classes (dict, optional): instance id -> category id. Defaults to
            None (every instance is category 1).

    Returns:
        list[dict]: one annotation per instance id present, in increasing id
        order, with ``segmentation``, ``bbox`` [x, y, w, h] (tight, pixel
        edges), ``area`` (pixel count), ``iscrowd`` 0 and ``inst_id`` (the id
        in the map, so the map can be rebuilt with the same ids).
    """
    h, w = inst_map.shape
    anns = []
    objects = ndimage.find_objects(inst_map)
    ann_id = start_ann_id
    for idx, sl in enumerate(objects):
        if sl is None:
            continue
        inst_id = idx + 1
        ys, xs = np.nonzero(inst_map[sl] == inst_id)
        ys = ys + sl[0].start
        xs = xs + sl[1].start
        cat = 1 if classes is None else classes.get(inst_id)
        if cat is None:
            raise KeyError(f'image {image_id}: no class for instance '
                           f'{inst_id}')
        x0, y0 = int(sl[1].start), int(sl[0].start)
        anns.append(
            dict(id=ann_id,
                 image_id=int(image_id),
                 category_id=int(cat),
                 segmentation=encode_instance_rle(ys, xs, h, w),
                 bbox=[
                     float(x0),
                     float(y0),
                     float(sl[1].stop - x0),
                     float(sl[0].stop - y0)
                 ],
                 area=int(len(ys)),
                 iscrowd=0,
                 inst_id=inst_id))
        ann_id += 1
    return anns


def annotations_to_instance_map(anns: Sequence[dict],
                                height: int,
                                width: int,
                                use_inst_id: bool = True) -> np.ndarray:
    """Paint annotations into an instance map (later ones overwrite).

    Args:
        anns (Sequence[dict]): COCO annotations of one image, painted in the
            given order.
        height (int): H.
        width (int): W.
        use_inst_id (bool): use each annotation's ``inst_id`` when present,
            else 1..N in order. Defaults to True.

    Returns:
        np.ndarray: (H, W) int32 instance map.
    """
    out = np.zeros((height, width), np.int32)
    for i, ann in enumerate(anns):
        m = decode_segmentation(ann['segmentation'], height, width)
        val = ann.get('inst_id', i + 1) if use_inst_id else i + 1
        out[m.astype(bool)] = val
    return out
