"""Command-line inputs of the inference tools: files, folders and globs.

Shared by tools/infer.py (images), tools/infer_wsi.py and
tools/infer_cohort.py (slides). It lives beside the tools, not in the
package, so that a mistyped path is reported before torch and mmdet load.
"""
import glob
import os
import os.path as osp
from typing import List, Sequence, Tuple

__all__ = ['collect_files', 'output_stems']


def collect_files(inputs: Sequence[str], exts: Sequence[str],
                  what: str) -> Tuple[List[str], List[str]]:
    """Expand files, folders and globs into file paths.

    Args:
        inputs (Sequence[str]): Files (any extension), folders (their files
            ending in one of ``exts``, sorted) and glob patterns.
        exts (Sequence[str]): Lower-case extensions taken from folders.
        what (str): Noun for the messages ('image', 'slide').

    Returns:
        tuple[list[str], list[str]]: paths (input order, folders sorted,
        duplicates removed) and messages about inputs that gave no file.
    """
    exts = tuple(exts)
    paths, problems = [], []
    for item in inputs:
        if osp.isdir(item):
            found = sorted(
                osp.join(item, f) for f in os.listdir(item)
                if f.lower().endswith(exts)
                and osp.isfile(osp.join(item, f)))
            if not found:
                problems.append(f'folder "{item}" contains no {what} '
                                f'({", ".join(exts)})')
        elif osp.isfile(item):
            found = [item]
        elif glob.has_magic(item):
            found = sorted(p for p in glob.glob(item) if osp.isfile(p))
            if not found:
                problems.append(f'pattern "{item}" matches no file')
        else:
            problems.append(f'"{item}" does not exist')
            found = []
        paths.extend(found)
    seen, unique = set(), []
    for p in paths:
        key = osp.abspath(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, problems


def output_stems(paths: Sequence[str]) -> List[str]:
    """File stems (``a.ome.tiff`` -> ``a.ome``), unique across inputs
    (``x``, ``x_1``, ...)."""
    stems, counts = [], {}
    for p in paths:
        stem = osp.splitext(osp.basename(p))[0]
        n = counts.get(stem, 0)
        counts[stem] = n + 1
        stems.append(stem if n == 0 else f'{stem}_{n}')
    return stems
