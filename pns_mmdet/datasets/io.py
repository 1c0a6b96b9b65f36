"""Readers for nucleus images and instance maps in the formats public
nucleus datasets ship (16-bit PNG, TIFF, ``.npy``, ``.mat``).

Every reader fails loudly, naming the file and what was expected, because
silently mis-read labels (a float map truncated to int, an RGB label image
read as one channel) corrupt the metrics without any visible error. Corrupt
files (truncated, flipped bytes, headers claiming absurd sizes) give the
same kind of error, never a MemoryError or a bare library exception
(``tests/test_reliability/test_corrupted_inputs.py`` tries hundreds).
"""
import io
import os.path as osp
import zipfile
from typing import Optional, Sequence

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .npy_io import check_exists, load_npy

__all__ = [
    'load_instance_map', 'load_image', 'load_npy', 'to_uint8_rgb',
    'check_instance_map', 'INST_MAP_KEYS'
]

#: Keys tried, in order, when reading an instance map from ``.mat`` /
#: ``.npz`` / pickled-dict ``.npy`` files (HoVer-Net / CPM-17 use
#: ``inst_map``; other releases use the alternatives).
INST_MAP_KEYS = ('inst_map', 'instance_map', 'inst', 'instances', 'label',
                 'labels', 'mask', 'masks', 'gt', 'GT', 'map')

_PIL_IMAGE_EXTS = ('.png', '.tif', '.tiff', '.bmp', '.jpg', '.jpeg', '.gif',
                   '.webp', '.ppm', '.pgm')


def _pick_key(container: dict, path: str, key: Optional[str],
              candidates: Sequence[str]) -> np.ndarray:
    """Return ``container[key]`` or the first candidate key present."""
    names = [k for k in container.keys() if not str(k).startswith('__')]
    if key is not None:
        if key not in container:
            raise KeyError(f'{path}: key {key!r} not found; available keys: '
                           f'{sorted(map(str, names))}')
        return container[key]
    for k in candidates:
        if k in container:
            return container[k]
    raise KeyError(f'{path}: no instance-map key found; tried '
                   f'{list(candidates)}, available keys: '
                   f'{sorted(map(str, names))}. Pass key=... explicitly.')


def check_instance_map(arr: np.ndarray, name: str) -> np.ndarray:
    """Validate an instance map and return it as int32 (int64 if needed).

    Args:
        arr (np.ndarray): candidate map, (H, W) or (H, W, 1); integer, bool,
            or float holding integral values.
        name (str): file (or array) name used in error messages.

    Returns:
        np.ndarray: (H, W) int32 map (int64 when ids exceed int32), 0 =
        background, 1..N = instance ids (ids need not be contiguous).

    Raises:
        ValueError: not 2-D, not numeric, non-integral or non-finite floats,
            or negative values.
    """
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f'{name}: instance map must be 2-D (H, W), got '
                         f'shape {arr.shape}')
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ValueError(f'{name}: instance map contains NaN/inf values')
        if not np.array_equal(arr, np.round(arr)):
            bad = arr[arr != np.round(arr)][:3]
            raise ValueError(f'{name}: instance map has non-integer values '
                             f'(e.g. {bad.tolist()}); expected integer ids')
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f'{name}: instance map must hold integers, got '
                         f'dtype {arr.dtype}')
    if arr.size and arr.min() < 0:
        raise ValueError(f'{name}: instance map has negative values (min '
                         f'{arr.min()}); expected 0 = background, >0 = ids')
    max_id = int(arr.max()) if arr.size else 0
    out_dtype = np.int32 if max_id <= np.iinfo(np.int32).max else np.int64
    return np.ascontiguousarray(arr.astype(out_dtype, copy=False))


def _load_npy(path: str, key: Optional[str]) -> np.ndarray:
    if path.lower().endswith('.npz'):
        return _load_npz(path, key)
    # Upstream PromptNucSeg stores ``{'inst_map', 'type_map'}`` dicts in
    # .npy files: read through the restricted unpickler of load_npy.
    data = load_npy(path, allow_object=True)
    if isinstance(data, dict):
        return _pick_key(data, path, key, INST_MAP_KEYS)
    if isinstance(data, np.ndarray) and data.dtype.hasobject:
        raise ValueError(f'{path}: object .npy that is not a dict of '
                         'arrays; expected an (H, W) integer array')
    if not isinstance(data, np.ndarray):
        raise ValueError(f'{path}: .npy holds a {type(data).__name__}; '
                         'expected an (H, W) integer array or a dict')
    return data


def _load_npz(path: str, key: Optional[str]) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as data:
            name = key
            if name is None:
                name = next((k for k in INST_MAP_KEYS if k in data.files),
                            None)
            if name is None or name not in data.files:
                # the KeyError listing the available keys
                _pick_key({k: None for k in data.files}, path, key,
                          INST_MAP_KEYS)
            return data[name]
    except KeyError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile,
            zipfile.LargeZipFile, NotImplementedError, MemoryError,
            RuntimeError, io.UnsupportedOperation) as e:
        raise ValueError(f'cannot read {path}: corrupt .npz file '
                         f'({type(e).__name__}: {e})') from e


def _load_mat(path: str, key: Optional[str]) -> np.ndarray:
    import scipy.io
    try:
        mat = scipy.io.loadmat(path)
    except NotImplementedError as e:
        raise ValueError(
            f'{path}: MATLAB v7.3 (HDF5) files are not supported; re-save '
            'with `save(..., "-v7")` or convert to .npy/.png') from e
    except Exception as e:  # scipy raises several types on corrupt files
        raise ValueError(f'cannot read .mat file {path}: {e}') from e
    return _pick_key(mat, path, key, INST_MAP_KEYS)


def _load_label_image(path: str) -> np.ndarray:
    """Read a label image without any colour conversion or bit reduction."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ('I;16', 'I;16B', 'I;16L', 'I', 'F', 'L', '1', 'P',
                            'I;16N'):
                # 'P' here is kept as palette indices (= ids), not colours.
                return np.array(img)
    except Image.DecompressionBombError as e:
        # Never let OpenCV try a header claiming billions of pixels.
        raise ValueError(f'cannot read instance map image {path}: {e}'
                         ) from e
    except Exception:  # fall back to OpenCV below (e.g. exotic TIFFs)
        pass
    arr = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError(f'cannot read instance map image {path} '
                         '(unreadable, truncated or unsupported format)')
    return arr


def load_instance_map(path: str, key: Optional[str] = None) -> np.ndarray:
    """Load an instance-id map.

    Supported: 8/16/32-bit PNG and TIFF (read unchanged, never rescaled),
    ``.npy`` (plain array or upstream's pickled ``{'inst_map': ...}`` dict),
    ``.npz`` and ``.mat`` (key ``key``, else the first of
    :data:`INST_MAP_KEYS` present).

    Args:
        path (str): file path.
        key (str, optional): array name inside ``.mat``/``.npz``/dict files.
            Defaults to None (auto).

    Returns:
        np.ndarray: (H, W) int32 (int64 if ids overflow int32); 0 is
        background, positive values are instance ids.

    Raises:
        FileNotFoundError: the file does not exist.
        KeyError: no usable key in a ``.mat``/``.npz``/dict file (the message
            lists the available keys).
        ValueError: unreadable file, or the map is not 2-D, has negative
            values or non-integer floats.
    """
    path = str(path)
    check_exists(path, 'instance map')
    ext = osp.splitext(path)[1].lower()
    if ext in ('.npy', '.npz'):
        arr = _load_npy(path, key)
    elif ext == '.mat':
        arr = _load_mat(path, key)
    elif ext in _PIL_IMAGE_EXTS:
        if ext in ('.jpg', '.jpeg'):
            raise ValueError(f'{path}: JPEG is lossy and cannot store '
                             'instance ids; use PNG/TIFF/.npy/.mat')
        arr = _load_label_image(path)
    else:
        raise ValueError(f'{path}: unsupported instance-map extension '
                         f'{ext!r}; expected .png, .tif, .tiff, .npy, .npz '
                         'or .mat')
    return check_instance_map(arr, path)


def to_uint8_rgb(arr: np.ndarray, name: str = 'image') -> np.ndarray:
    """Convert an image array to (H, W, 3) uint8 RGB.

    Channel handling: (H, W) and (H, W, 1) are replicated to 3 channels;
    (H, W, 4) drops alpha (no compositing); (H, W, 2) (grey+alpha) keeps the
    grey channel. The channel order is left unchanged (RGB in, RGB out).

    Intensity handling (deterministic, per image):

    - uint8: unchanged.
    - other integers (e.g. 16-bit): unchanged if the max is <= 255 (8-bit
      data in a wider container); otherwise linearly rescaled by the image
      maximum, ``round(v * 255 / max)``.
    - floats: values in [0, 1] are multiplied by 255; values in [0, 255]
      (e.g. PanNuke's float64 images) are rounded; larger ranges are
      rescaled by the maximum. Negative values are clipped to 0.

    Args:
        arr (np.ndarray): (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or
            (H, W, 4) array.
        name (str): used in error messages. Defaults to 'image'.

    Returns:
        np.ndarray: (H, W, 3) uint8.
    """
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f'{name}: expected an (H, W), (H, W, 1|2|3|4) '
                         f'image, got shape {arr.shape}')
    if arr.shape[-1] == 2:
        arr = arr[..., :1]
    elif arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        if not (np.issubdtype(arr.dtype, np.integer)
                or np.issubdtype(arr.dtype, np.floating)):
            raise ValueError(f'{name}: unsupported image dtype {arr.dtype}')
        a = arr.astype(np.float64)
        if not np.isfinite(a).all():
            raise ValueError(f'{name}: image contains NaN/inf values')
        a = np.clip(a, 0, None)
        vmax = float(a.max()) if a.size else 0.0
        if np.issubdtype(arr.dtype, np.floating) and vmax <= 1.0:
            a = a * 255.0
        elif vmax > 255.0:
            a = a * (255.0 / vmax)
        arr = np.clip(np.round(a), 0, 255).astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr)


def load_image(path: str) -> np.ndarray:
    """Load an image as (H, W, 3) uint8 RGB.

    Grayscale and palette images become RGB, alpha is dropped, and 16-bit
    or float images are converted by :func:`to_uint8_rgb` (rescaled by the
    image maximum when it exceeds 255). 16-bit colour PNG/TIFF files are read
    with OpenCV at full depth (Pillow would silently drop the low byte).

    Args:
        path (str): image path (PNG, TIFF, JPEG, BMP, ...).

    Returns:
        np.ndarray: (H, W, 3) uint8 RGB.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is unreadable, truncated or has an unsupported
            layout.
    """
    path = str(path)
    check_exists(path, 'image')
    deep = False
    try:
        with Image.open(path) as img:
            img.load()  # forces full decoding: truncation raises here
            deep = _has_deep_colour(img)
            mode = img.mode
            if mode in ('RGB', 'L') or mode.startswith('I') or mode == 'F':
                arr = np.array(img)
            else:
                if mode == 'P' and 'transparency' in img.info:
                    img = img.convert('RGBA')
                # RGBA/LA/PA/P/1/CMYK/YCbCr/...: alpha dropped, no compositing
                arr = np.array(img.convert('RGB'))
    except UnidentifiedImageError as e:
        if not path.lower().endswith(('.tif', '.tiff')):
            raise ValueError(f'cannot read image {path} (unreadable, '
                             f'truncated or unsupported format): {e}') from e
        # TIFF layouts Pillow does not know (float RGB, >4 samples...).
        return to_uint8_rgb(_read_tiff(path), path)
    except Exception as e:
        raise ValueError(f'cannot read image {path} (unreadable, truncated '
                         f'or unsupported format): {e}') from e
    if deep:
        # Pillow reduces 48/64-bit colour to 8 bits by dropping the low byte
        # without saying so; OpenCV reads the full depth.
        full = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if full is not None and full.dtype != np.uint8 and full.ndim == 3:
            full = full[..., :3][..., ::-1]  # BGR(A) -> RGB
            return to_uint8_rgb(full, path)
    return to_uint8_rgb(arr, path)


def _read_tiff(path: str) -> np.ndarray:
    """First page of a TIFF with tifffile, size checked before decoding."""
    import tifffile
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            pixels = int(np.prod(page.shape[:2]))
            if pixels > Image.MAX_IMAGE_PIXELS * 2:
                raise ValueError(
                    f'cannot read image {path}: {page.shape[1]}x'
                    f'{page.shape[0]} pixels exceed the decompression-bomb '
                    f'limit ({Image.MAX_IMAGE_PIXELS * 2})')
            return page.asarray()
    except ValueError as e:
        if str(e).startswith(f'cannot read image {path}'):
            raise
        raise ValueError(f'cannot read image {path} (unreadable, truncated '
                         f'or unsupported TIFF): {e}') from e
    except Exception as e:  # tifffile raises many types on corrupt files
        raise ValueError(f'cannot read image {path} (unreadable, truncated '
                         f'or unsupported TIFF): {type(e).__name__}: {e}'
                         ) from e


def _has_deep_colour(img: Image.Image) -> bool:
    """Whether a colour PNG/TIFF stores more than 8 bits per channel."""
    if img.mode not in ('RGB', 'RGBA', 'RGBX'):
        return False
    if img.format == 'PNG':
        # IHDR bit depth; Pillow exposes no attribute for it.
        fp = getattr(img, 'filename', None)
        if fp:
            with open(fp, 'rb') as f:
                head = f.read(25)
            return len(head) == 25 and head[24] > 8
    if img.format == 'TIFF':
        bits = img.tag_v2.get(258, (8, ))
        bits = bits if isinstance(bits, tuple) else (bits, )
        return max(bits) > 8
    return False
