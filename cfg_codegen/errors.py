"""Errors raised by the Darknet toolchain.

Why a separate hierarchy under :class:`toolchain.core.errors.EdgepruneError`: the CLI turns every
``EdgepruneError`` into one line and exit code 2, and the parser's fuzz tests check that no
input makes it raise anything else. Messages start with the place (``file:line [section]
layer N, key 'k'``) and say what was expected and what was found.
"""

from __future__ import annotations

from toolchain.core.errors import EdgepruneError


class CfgError(EdgepruneError):
    """A Darknet .cfg is malformed or inconsistent (bad value, bad index, shape mismatch)."""


class UnsupportedCfgError(CfgError):
    """The .cfg is valid Darknet but uses something edgeprune cannot convert.

    The message always starts with ``unsupported:`` so users (and tests) can tell "your file is
    wrong" from "we do not do that yet".
    """

    def __init__(self, message: str):
        super().__init__(message if message.startswith("unsupported:") else f"unsupported: {message}")


class WeightsError(CfgError):
    """A Darknet .weights file does not fit its .cfg (size, header) or cannot be read."""
