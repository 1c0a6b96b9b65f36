""".npy files read safely: header checked against the file size before any
allocation, pickled payloads rebuilt only as numpy arrays."""
import os.path as osp
import pickle
from typing import Optional

import numpy as np

__all__ = ['load_npy', 'ArrayUnpickler', 'check_exists']


def check_exists(path: str, what: str) -> None:
    """Raise FileNotFoundError / IsADirectoryError naming ``path``."""
    if osp.isdir(path):
        raise IsADirectoryError(f'{what} path is a directory, not a file: '
                                f'{path}')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} file not found: {path}')


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays inside dicts/lists/tuples, nothing else.

    Upstream PromptNucSeg stores ``{'inst_map': ..., 'type_map': ...}``
    dicts in ``.npy`` files (an object array, i.e. a pickle); a crafted
    pickle could run code, so only numpy's array reconstruction and dtype
    classes may be looked up (dicts, lists, tuples, strings and numbers
    need no lookup).
    """

    _ALLOWED = {
        ('numpy.core.multiarray', '_reconstruct'),
        ('numpy._core.multiarray', '_reconstruct'),
        ('numpy.core.multiarray', 'scalar'),
        ('numpy._core.multiarray', 'scalar'),
        ('numpy', 'ndarray'),
        ('numpy', 'dtype'),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED or (
                module == 'numpy.dtypes' and name.endswith('DType')):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f'{module}.{name} is not allowed (only numpy arrays inside '
            'dicts/lists)')


def load_npy(path: str,
             mmap_mode: Optional[str] = None,
             allow_object: bool = False):
    """Read a ``.npy`` file, checking its header against the file first.

    A truncated file, or a header claiming a shape far larger than the file
    (a few bytes declaring 200000 x 200000 int64), is reported before any
    memory is allocated; object arrays (pickles) are only read with
    ``allow_object`` and then through a restricted unpickler that rebuilds
    numpy arrays inside dicts/lists and refuses anything else.

    Args:
        path (str): File path.
        mmap_mode (str, optional): As in :func:`numpy.load` (plain arrays
            only). Defaults to None.
        allow_object (bool): Accept object arrays (e.g. upstream's pickled
            ``{'inst_map': ...}`` dicts). Defaults to False.

    Returns:
        np.ndarray | object: The array; for a 0-d object array, its item
        (e.g. the dict).

    Raises:
        FileNotFoundError / IsADirectoryError: No file at ``path``.
        ValueError: Not a ``.npy`` file, corrupt or truncated header or
            data, object array not allowed or holding other objects.
    """
    path = str(path)
    check_exists(path, '.npy')
    try:
        with open(path, 'rb') as f:
            shape, dtype, offset = _npy_header(f)
            if dtype.hasobject and allow_object:
                arr = ArrayUnpickler(f).load()
    except (ValueError, OSError, EOFError, pickle.UnpicklingError,
            AttributeError, TypeError, ImportError, IndexError, KeyError,
            MemoryError, SyntaxError) as e:
        raise ValueError(f'cannot read {path}: corrupt or not a .npy file '
                         f'({type(e).__name__}: {e})') from e
    if dtype.hasobject:
        if not allow_object:
            raise ValueError(f'{path}: holds Python objects (a pickle), not '
                             'a plain numeric array')
        if not isinstance(arr, np.ndarray):
            raise ValueError(f'{path}: object data is not an array')
        return arr.item() if arr.shape == () else arr
    count = 1
    for n in shape:
        count *= int(n)
    need = count * dtype.itemsize
    have = osp.getsize(path) - offset
    if have < need:
        raise ValueError(
            f'cannot read {path}: truncated or corrupt .npy file (header '
            f'declares shape {shape} {dtype}, {need} bytes, but only {have} '
            'bytes follow)')
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError, MemoryError) as e:
        raise ValueError(f'cannot read {path}: {type(e).__name__}: {e}'
                         ) from e


def _npy_header(f):
    """(shape, dtype, data offset) of an open ``.npy`` file."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(f)
    else:
        raise ValueError(f'unsupported .npy format version {version}')
    if any(int(n) < 0 for n in shape):
        raise ValueError(f'negative dimension in shape {shape}')
    return shape, dtype, f.tell()
