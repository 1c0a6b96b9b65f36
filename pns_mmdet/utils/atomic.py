"""Crash-safe file output: write to a temporary name, then rename.

A process killed while writing (SIGKILL, OOM killer, power loss) leaves at
most a ``.<name>.tmp-*`` file beside the target, never a truncated file
under the final name, so a later run can trust whatever it finds there.
"""
import contextlib
import errno
import os
import os.path as osp
import tempfile
from typing import IO, Iterator

__all__ = ['atomic_write', 'check_writable_dir']


@contextlib.contextmanager
def atomic_write(path: str, mode: str = 'wb', fsync: bool = True,
                 **open_kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it there on success.

    Args:
        path (str): Final file name. Its folder must exist.
        mode (str): ``'w'``/``'wb'`` (text or binary) as in :func:`open`.
        fsync (bool): Flush the data to disk before the rename, so the file
            survives a power loss too. Defaults to True.
        **open_kwargs: Passed to :func:`open` (e.g. ``encoding``, ``newline``).

    Yields:
        IO: The open temporary file. If the block raises, the temporary file
        is removed and ``path`` is left as it was.
    """
    if 'w' not in mode or any(c in mode for c in 'ax+'):
        raise ValueError(f'atomic_write: mode must be "w" or "wb", '
                         f'got "{mode}"')
    folder = osp.dirname(osp.abspath(path))
    fd, tmp = tempfile.mkstemp(
        dir=folder, prefix=f'.{osp.basename(path)}.tmp-')
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the usual umask-based mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_writable_dir(path: str, what: str = '--out-dir') -> str:
    """Create ``path`` if needed and prove a file can be written there.

    Called before any model work, so an unwritable or full output folder is
    reported at once rather than after hours of inference.

    Args:
        path (str): Output folder.
        what (str): How the user named it, for the message.

    Returns:
        str: The absolute path.

    Raises:
        OSError: If the folder cannot be created or written (read-only,
            permission denied, disk full), naming the folder and the reason.
    """
    path = osp.abspath(osp.expanduser(path))
    try:
        os.makedirs(path, exist_ok=True)
        # A probe with a unique name: several processes (distributed ranks)
        # may check the same folder at once.
        fd, probe = tempfile.mkstemp(dir=path, prefix='.pns_write_check-')
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(b'\0' * 4096)
                f.flush()
                os.fsync(f.fileno())
        finally:
            os.unlink(probe)
    except OSError as err:
        reason = ('the disk is full' if err.errno == errno.ENOSPC else
                  err.strerror or str(err))
        raise OSError(err.errno,
                      f'{what} "{path}" cannot be written: {reason}') from err
    return path
