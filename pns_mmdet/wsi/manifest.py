"""The cohort manifest ``OUT/cohort.csv``: one row per slide."""
import csv
import os.path as osp
from collections import OrderedDict
from typing import Dict, Optional

from ..utils import atomic_write

__all__ = ['MANIFEST_NAME', 'MANIFEST_COLUMNS', 'STATUSES', 'CohortManifest']

MANIFEST_NAME = 'cohort.csv'
MANIFEST_COLUMNS = ('slide', 'status', 'nuclei', 'seconds', 'worker',
                    'error')
# Row states: pending (not started), running (sent to a worker),
# finished (run.json written), failed (error column says why).
STATUSES = ('pending', 'running', 'finished', 'failed')


class CohortManifest:
    """``OUT/cohort.csv``: one row per slide, rewritten atomically.

    Columns :data:`MANIFEST_COLUMNS`; ``slide`` is the absolute slide path
    (the key). Rows of slides that a later run does not list are kept, so
    a cohort can grow over several runs.

    Args:
        path (str): The CSV file (read when it exists).

    Raises:
        ValueError: An existing file without the manifest's columns (names
            the file and the columns expected).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows: 'OrderedDict[str, Dict[str, str]]' = OrderedDict()
        if osp.isfile(path):
            with open(path, newline='') as f:
                reader = csv.DictReader(f)
                if tuple(reader.fieldnames or ()) != MANIFEST_COLUMNS:
                    raise ValueError(
                        f'{path} is not a cohort manifest: columns '
                        f'{reader.fieldnames}, expected '
                        f'{list(MANIFEST_COLUMNS)} (move it away or choose '
                        'another --out-dir)')
                for row in reader:
                    self.rows[row['slide']] = row

    def get(self, slide: str) -> Optional[Dict[str, str]]:
        return self.rows.get(slide)

    def set(self, slide: str, status: str, nuclei=0, seconds=0.0,
            worker: str = '', error: str = '') -> None:
        """Add or replace the row of a slide (call :meth:`write` after)."""
        if status not in STATUSES:
            raise ValueError(f'status must be one of {STATUSES}, got '
                             f'{status!r}')
        seconds = f'{float(seconds):.2f}' if seconds != '' else ''
        self.rows[slide] = dict(
            slide=slide, status=status, nuclei=str(int(nuclei)),
            seconds=seconds, worker=worker,
            error=' '.join(str(error).split()))  # one line per row

    def write(self) -> None:
        """Replace the file (temporary file + rename: never half
        written)."""
        with atomic_write(self.path, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows.values())
