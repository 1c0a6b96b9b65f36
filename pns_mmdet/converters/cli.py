"""Error reporting shared by the converter command lines.

The converters raise ``ValueError`` / ``KeyError`` / ``OSError`` naming the
file and what is wrong; on the command line that message is all the user
needs, not the traceback leading to it.
"""
import sys
from typing import Callable

__all__ = ['run_cli']


def run_cli(tool: str, fn: Callable[[], None]) -> int:
    """Run ``fn``; on a bad input print ``[tool] error: <message>``.

    Args:
        tool (str): Name shown in the message (e.g. ``'pannuke'``).
        fn (Callable): The conversion, with its arguments bound.

    Returns:
        int: 0 on success, 2 after a reported error (other exceptions, i.e.
        bugs, propagate with their traceback).
    """
    try:
        fn()
    except (ValueError, KeyError, OSError) as err:
        # KeyError's str() adds quotes around the message.
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f'[{tool}] error: {msg}', file=sys.stderr)
        return 2
    return 0
