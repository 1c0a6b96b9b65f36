"""Reading processing tiles ahead, and timing the stages of a slide run."""
import os
import time
from contextlib import contextmanager
from typing import Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from .grid import ProcessingTile

__all__ = ['TileDataset', 'no_collate', 'StageTimer']


class TileDataset(Dataset):
    """Reads processing tiles (model frame) from a slide.

    The reader is opened lazily in each process (DataLoader workers get
    their own handle: openslide handles are not shareable across fork).
    """

    def __init__(self, path: str, slide_mpp: Optional[float],
                 model_mpp: float, tiles: Sequence[ProcessingTile]) -> None:
        self.path = path
        self.slide_mpp = slide_mpp
        self.model_mpp = model_mpp
        self.tiles = list(tiles)
        self._reader = None
        self._pid = None

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, i: int):
        if self._reader is None or self._pid != os.getpid():
            from .reader import open_slide
            self._reader = open_slide(self.path, slide_mpp=self.slide_mpp)
            self._pid = os.getpid()
        t = self.tiles[i]
        start = time.perf_counter()
        rgb = self._reader.read_region(t.x, t.y, t.w, t.h, self.model_mpp)
        return t.index, np.ascontiguousarray(rgb), time.perf_counter() - start


def no_collate(item):
    """Items as they are (one tile per batch)."""
    return item


class StageTimer:
    """Accumulates seconds per stage; wraps engine methods on an instance
    (prompter / encoder / decoder) without touching the model's code."""

    STAGES = ('read', 'prompter', 'encoder', 'decoder', 'stitching',
              'merge', 'writing')

    def __init__(self) -> None:
        self.seconds = {k: 0.0 for k in self.STAGES}
        self._wrapped = []

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def wrap(self, obj, attr: str, name: str) -> None:
        fn = getattr(obj, attr, None)
        if fn is None or not callable(fn):
            return

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start

        setattr(obj, attr, timed)
        self._wrapped.append((obj, attr))

    def unwrap(self) -> None:
        for obj, attr in self._wrapped:
            # The wrapper is an instance attribute; removing it restores
            # the class method.
            obj.__dict__.pop(attr, None)
        self._wrapped = []
