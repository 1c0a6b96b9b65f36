"""Load a config file for the tools, with one clear error naming it.

``mmengine.Config.fromfile`` reports a broken file with whatever the parser
raised (``SyntaxError: '(' was never closed (<unknown>, line 1)``,
``UnicodeDecodeError``, ``JSONDecodeError``, ``IsADirectoryError`` ...),
mostly without the file's name and from deep inside mmengine. The tools
call :func:`load_config` instead, which raises :class:`ConfigFileError`
naming the file, what is wrong and, for a config that loads but lacks what
the tool needs, the missing keys. A ``_base_`` chain that comes back to a
file already in it is reported at once (mmengine recurses until Python's
recursion limit, which takes tens of seconds).
"""
import ast
import os.path as osp
from typing import Iterable, List, Tuple

from mmengine.config import Config

__all__ = ['ConfigFileError', 'load_config']

_SUFFIXES = ('.py', '.json', '.yaml', '.yml')


class ConfigFileError(ValueError):
    """A config file cannot be loaded or lacks keys (names the file)."""


def load_config(path: str, required: Iterable[str] = ()) -> Config:
    """``Config.fromfile(path)`` with errors that name the file.

    Args:
        path (str): Config file (``.py``, ``.json``, ``.yaml``/``.yml``).
        required (Iterable[str]): Top-level keys the caller needs (e.g.
            ``('model', 'test_dataloader')``).

    Returns:
        Config: The loaded config.

    Raises:
        ConfigFileError: If ``path`` is missing, a directory, of another
            type, unreadable, not valid Python/JSON/YAML, if one of its
            ``_base_`` files or ``custom_imports`` fails, if it exits the
            interpreter, or if it lacks a ``required`` key.
    """
    path = str(path)
    if osp.isdir(path):
        raise ConfigFileError(f'config "{path}" is a directory, not a file')
    if not osp.isfile(path):
        raise ConfigFileError(f'config "{path}" does not exist')
    if not path.lower().endswith(_SUFFIXES):
        raise ConfigFileError(
            f'config "{path}" must be a {"/".join(_SUFFIXES)} file')
    if path.lower().endswith('.py'):
        _check_base_cycle(path)
    try:
        cfg = Config.fromfile(path)
    # A config is Python: it may raise anything, SystemExit included.
    except (Exception, SystemExit) as err:
        raise ConfigFileError(
            f'config "{path}" cannot be loaded: {_describe(err)}') from err
    missing = [k for k in required if k not in cfg]
    if missing:
        raise ConfigFileError(
            f'config "{path}" lacks {", ".join(missing)} (needed here); is '
            'it the right config, with its _base_ files?')
    return cfg


def _base_files(path: str) -> List[str]:
    """The local ``_base_`` files a ``.py`` config names; [] when it has
    none or cannot be parsed (then ``Config.fromfile`` reports it)."""
    try:
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == '_base_'
                for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError):
                return []
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, (list, tuple)):
                return []
            # 'mmdet::...' names a package's config: no cycle through it.
            return [
                osp.normpath(osp.join(osp.dirname(path), n)) for n in names
                if isinstance(n, str) and '::' not in n
            ]
    return []


def _check_base_cycle(path: str, chain: Tuple[str, ...] = ()) -> None:
    real = osp.realpath(path)
    if real in chain:
        loop = ' -> '.join(list(chain[chain.index(real):]) + [real])
        raise ConfigFileError(f'config "{chain[0]}" has a _base_ cycle: '
                              f'{loop}')
    for base in _base_files(path):
        if base.endswith('.py') and osp.isfile(base):
            _check_base_cycle(base, chain + (real, ))


def _describe(err: BaseException) -> str:
    if isinstance(err, SyntaxError) and err.lineno:
        return f'SyntaxError: {err.msg} (line {err.lineno})'
    if isinstance(err, UnicodeDecodeError):
        return (f'not UTF-8 text (byte {err.start}: '
                f'{err.object[err.start:err.start + 1]!r})')
    lines = str(err).strip().splitlines()
    text = lines[0][:300] if lines else ''
    return f'{type(err).__name__}: {text}' if text else type(err).__name__
