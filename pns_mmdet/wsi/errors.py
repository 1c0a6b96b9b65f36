"""Errors of the slide readers (catch :class:`SlideError` to skip a bad
slide)."""

__all__ = ['SlideError', 'SlideReadError', 'SlideMetadataError']


class SlideError(RuntimeError):
    """Base class of the slide errors (catch it to skip a bad slide)."""


class SlideReadError(SlideError):
    """The file is missing, truncated, corrupt or of an unsupported format."""


class SlideMetadataError(SlideError, ValueError):
    """The slide lacks metadata needed to use it (its MPP)."""
