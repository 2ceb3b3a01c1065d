"""One error hierarchy for everything edgeprune reports to a user.

The CLI catches :class:`EdgepruneError`, prints its message as one sentence on stderr and
exits with code 2; anything else is a bug and keeps its traceback. Messages name the file,
the expected and the actual value, so the user can act without reading code.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator


class EdgepruneError(Exception):
    """Base class of errors caused by user input or environment, never by a bug."""


class InputFileError(EdgepruneError):
    """A file given by the user is missing, unreadable or of the wrong kind."""


class ModelMismatchError(EdgepruneError):
    """A model does not fit what it is used with (class count, architecture, input shape)."""


class UnsupportedModelError(EdgepruneError):
    """The model type or a layer in it is something edgeprune cannot handle."""


class OutputError(EdgepruneError):
    """An output could not be written: no space, no permission, an I/O error, or another run holds it."""


class PruningError(EdgepruneError):
    """Pruning could not produce a valid, equivalent model."""


def library_reason(exc: BaseException, limit: int = 160) -> str:
    """The first informative line of a library's error text, shortened at a word boundary.

    Why: OpenVINO, onnxruntime and protobuf prefix their messages with source locations
    ("Exception from src/...cpp:84:") and append pages of context; the user needs the one
    line that says what was wrong.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("Exception from src", "[ONNXRuntimeError] : 1 : FAIL :"))]
    text = lines[0] if lines else type(exc).__name__
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : [A-Z_]+ : ", "", text)
    text = re.sub(r"^Load model from \S+ failed:\s*", "", text)
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " …"
    return text


@contextlib.contextmanager
def opening(path, what: str) -> Iterator[None]:
    """Translate any library failure while opening ``path`` into one :class:`InputFileError`.

    Used only around the call that opens or compiles a user's file (OpenVINO's read_model,
    onnxruntime's InferenceSession, onnx.load), so a bug elsewhere keeps its traceback.
    """
    try:
        yield
    except EdgepruneError:
        raise
    except Exception as exc:  # noqa: BLE001 - each runtime raises its own types for a damaged file
        raise InputFileError(f"{path} is not a readable {what} ({library_reason(exc)})") from None
