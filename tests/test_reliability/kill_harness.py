"""Run a function in a forked child that SIGKILLs itself mid-write.

The child counts the bytes written to files under ``out_dir`` through
``open``, ``os.fdopen`` (what ``atomic_write`` uses) and ``cv2.imwrite``
(native; replaced by an encode + ``open`` that writes in place, as OpenCV
would). When the count reaches ``kill_at_byte`` it writes only the part of
the current chunk up to that byte, flushes, and sends itself SIGKILL, so the
kill lands in the middle of a file whichever way the code under test writes
it: a writer that writes in place leaves a truncated file under its final
name, an atomic one only a hidden temporary file. ``kill_at_rename`` kills
just before the k-th ``os.replace`` instead (a complete temporary file not
yet renamed).

Forking keeps the already imported torch / mmdet (a fresh interpreter costs
5-8 s per kill); the SIGKILL itself is the real signal.
"""
import builtins
import json
import os
import os.path as osp
import signal
import time
import traceback

__all__ = ['run_killed', 'broken_outputs']


def _child(fn, out_dir, kill_at_byte, kill_at_rename, report):
    import cv2
    import numpy as np
    import torch
    torch.set_num_threads(1)  # OpenMP pools do not survive fork()
    root = osp.realpath(out_dir)
    state = dict(written=0, renames=0)

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    class CountingFile:

        def __init__(self, f):
            self._f = f

        def write(self, data):
            left = None if kill_at_byte is None else \
                kill_at_byte - state['written']
            if left is not None and len(data) >= left:
                self._f.write(data[:max(left, 0)])
                self._f.flush()
                die()
            state['written'] += len(data)
            return self._f.write(data)

        def __enter__(self):
            self._f.__enter__()
            return self

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

        def __iter__(self):
            return iter(self._f)

        def __getattr__(self, name):
            return getattr(self._f, name)

    def watched(f, name):
        writing = any(c in getattr(f, 'mode', '') for c in 'wax+')
        if writing and osp.realpath(str(name)).startswith(root + os.sep):
            return CountingFile(f)
        return f

    real_open, real_fdopen, real_replace = builtins.open, os.fdopen, \
        os.replace

    def open_(file, *args, **kwargs):
        f = real_open(file, *args, **kwargs)
        return watched(f, file) if isinstance(file, (str, bytes,
                                                     os.PathLike)) else f

    def fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        return watched(f, os.readlink(f'/proc/self/fd/{fd}'))

    def replace(src, dst, *args, **kwargs):
        state['renames'] += 1
        if kill_at_rename is not None and state['renames'] >= \
                kill_at_rename:
            die()
        return real_replace(src, dst, *args, **kwargs)

    def imwrite(path, img, params=()):
        ok, data = cv2.imencode(osp.splitext(str(path))[1], img,
                                list(params))
        if ok:
            with open_(path, 'wb') as f:
                f.write(np.asarray(data).tobytes())
        return ok

    builtins.open, os.fdopen, os.replace = open_, fdopen, replace
    cv2.imwrite = imwrite
    fn()
    with real_open(report, 'w') as f:
        json.dump(dict(written=state['written'],
                       renames=state['renames']), f)


def run_killed(fn, out_dir, kill_at_byte=None, kill_at_rename=None,
               timeout=60.0):
    """Run ``fn()`` in a forked child with a kill point.

    Returns:
        dict: ``killed`` (bool: the child died of SIGKILL), ``exit`` (its
        exit code otherwise), and for a child that finished, ``written``
        (bytes written under ``out_dir``) and ``renames``.
    """
    report = osp.join(osp.dirname(osp.abspath(out_dir)),
                      f'.kill_report_{time.time_ns()}.json')
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            _child(fn, out_dir, kill_at_byte, kill_at_rename, report)
        except BaseException:
            with open(report + '.err', 'w') as f:
                f.write(traceback.format_exc())
            code = 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f'child did not finish in {timeout} s')
        time.sleep(0.01)
    out = dict(killed=os.WIFSIGNALED(status)
               and os.WTERMSIG(status) == signal.SIGKILL,
               exit=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None)
    if osp.exists(report + '.err'):
        with open(report + '.err') as f:
            raise AssertionError(f'child failed:\n{f.read()}')
    if osp.exists(report):
        with open(report) as f:
            out.update(json.load(f))
        os.unlink(report)
    return out


def _parses(path):
    """None if the file parses completely, else the error."""
    from PIL import Image
    try:
        if path.endswith(('.json', '.geojson')):
            with open(path) as f:
                json.load(f)
        elif path.endswith('.png'):
            with Image.open(path) as img:
                img.load()
        else:
            raise ValueError('unexpected output file type')
    except Exception as err:  # any failure to parse is the finding
        return f'{type(err).__name__}: {err}'
    return None


def broken_outputs(out_dir):
    """Files under final (non-hidden) names in ``out_dir`` that fail to
    parse, as {relative path: error}; and the number of final files."""
    broken, count = {}, 0
    for folder, _, files in os.walk(out_dir):
        for name in files:
            if name.startswith('.'):  # temporary files of atomic_write
                continue
            count += 1
            path = osp.join(folder, name)
            err = _parses(path)
            if err:
                broken[osp.relpath(path, out_dir)] = err
    return broken, count
