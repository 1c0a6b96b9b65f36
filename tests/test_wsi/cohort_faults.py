"""A stub inferencer whose worker process dies once, for the cohort tests.

:class:`DyingStubInferencer` is the exact disc-segmenting stub of
stub_inferencer.py; when ``PNS_TEST_COHORT_KILL`` is set to
``<slide file name>:<tiles>:<flag file>`` it kills its own process with
``os._exit`` on the call after ``<tiles>`` tiles of that slide (so those
tiles are in the journal), once: the first process to create the flag file
dies, the replacement Ray starts finds the flag and lives.

The environment variable is read only here (test path), in the Ray worker
that builds the model; the package has no fault hook. The slide being run
is learnt by wrapping ``pns_mmdet.wsi.reader.open_slide`` in that process
(the runner opens each slide through it).
"""
import os
import os.path as osp

from stub_inferencer import StubInferencer

KILL_ENV = 'PNS_TEST_COHORT_KILL'

_opened = {'slide': None}


def _watch_open_slide() -> None:
    """Record the last slide opened in this process."""
    from pns_mmdet.wsi import reader
    if getattr(reader.open_slide, '_cohort_faults', False):
        return
    original = reader.open_slide

    def open_slide(path, *args, **kwargs):
        _opened['slide'] = osp.basename(str(path))
        return original(path, *args, **kwargs)

    open_slide._cohort_faults = True
    reader.open_slide = open_slide


class _Dying:
    """Delegates to the stub; dies during the chosen slide, once."""

    def __init__(self, inner, slide: str, tiles: int, flag: str) -> None:
        self._inner = inner
        self._slide = slide
        self._tiles = tiles
        self._flag = flag
        self._calls = 0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __call__(self, rgb):
        if _opened['slide'] == self._slide:
            self._calls += 1
            if self._calls > self._tiles:
                try:
                    fd = os.open(self._flag, os.O_CREAT | os.O_EXCL |
                                 os.O_WRONLY)
                except FileExistsError:
                    pass  # died once already: this is the replacement
                else:
                    os.write(fd, str(os.getpid()).encode())
                    os.close(fd)
                    os._exit(1)  # like SIGKILL: no cleanup, no finally
        return self._inner(rgb)


class DyingStubInferencer:
    """Drop-in for ``pns_mmdet.apis.NucleusInferencer`` (see module
    doc)."""

    def __new__(cls, config, device=None, **kwargs):
        inner = StubInferencer(config, device, **kwargs)
        spec = os.environ.get(KILL_ENV)
        if not spec:
            return inner
        slide, tiles, flag = spec.split(':', 2)
        _watch_open_slide()
        return _Dying(inner, slide, int(tiles), flag)


if __name__ == '__main__':
    # Launcher: ``python cohort_faults.py ARGS...`` runs
    # tools/infer_cohort.py with this stub (and PNS_TEST_COHORT_KILL when
    # set), e.g. to time a cohort by hand.
    import sys

    import pns_mmdet.apis as apis
    from stub_inferencer import REPO, _load
    here = osp.dirname(osp.abspath(__file__))
    os.environ['PYTHONPATH'] = os.pathsep.join(
        p for p in (here, os.environ.get('PYTHONPATH', '')) if p)
    apis.NucleusInferencer = DyingStubInferencer
    infer_cohort = _load('pns_tool_infer_cohort',
                         osp.join(REPO, 'tools', 'infer_cohort.py'))
    sys.exit(infer_cohort.main(sys.argv[1:]))
