"""One error hierarchy for everything edgeprune reports to a user.

The CLI catches :class:`EdgepruneError`, prints its message as one sentence on stderr and
exits with code 2; anything else is a bug and keeps its traceback. Messages name the file,
the expected and the actual value, so the user can act without reading code.
"""

from __future__ import annotations


class EdgepruneError(Exception):
    """Base class of errors caused by user input or environment, never by a bug."""


class InputFileError(EdgepruneError):
    """A file given by the user is missing, unreadable or of the wrong kind."""


class ModelMismatchError(EdgepruneError):
    """A model does not fit what it is used with (class count, architecture, input shape)."""


class UnsupportedModelError(EdgepruneError):
    """The model type or a layer in it is something edgeprune cannot handle."""


class PruningError(EdgepruneError):
    """Pruning could not produce a valid, equivalent model."""
