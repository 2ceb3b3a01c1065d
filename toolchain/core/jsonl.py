"""The resumable record files of sweep and autotune: one JSON object per line, appended and fsynced.

Why one module: both runs must survive being killed at any moment. A record is written as one
line and flushed to disk before the run goes on, so a crash loses at most the record being
written; on reading, a torn last line is dropped with a note (that work is redone) and any other line that is
not a record is an error naming the file and line, never silently skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from toolchain.core.errors import InputFileError
from toolchain.core.fileio import write_failure
from toolchain.core.progress import note

T = TypeVar("T")


def read_records(path: str | os.PathLike, make: Callable[[dict], T], what: str) -> list[T]:
    """Every line of ``path`` turned into a record by ``make`` (``[]`` when the file does not exist).

    Raises:
        InputFileError: a line other than a torn last one is not JSON or ``make`` rejects it (TypeError).
    """
    path = Path(path)
    if not path.exists():
        return []
    records = []
    lines = path.read_text(errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            record = make(data) if isinstance(data, dict) else None
        except json.JSONDecodeError:
            if number == len(lines):  # torn last line: that work is redone
                note(f"{path} line {number} is incomplete (the run writing it was stopped mid-line); "
                     "ignored, that work is done again")
                continue
            record = None
        except TypeError:  # missing or unknown fields
            record = None
        if record is None:
            raise InputFileError(f"{path} line {number} is not {what}; remove that line (or the file to start over)")
        records.append(record)
    return records


def append_records(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Append each record as one line, then flush and fsync, so a crash loses at most this call's lines."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        _drop_torn_tail(Path(path))
        with open(path, "a") as fh:
            for record in records:
                fh.write(json.dumps(record, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise write_failure(Path(path), exc, None) or exc from None


def _drop_torn_tail(path: Path) -> None:
    """Cut a torn last line (no newline: its writer was killed mid-line), so the next record starts a line.

    Without this the next record would be glued onto the fragment, and the file would have a bad
    line in the middle; :func:`read_records` has said that the fragment is ignored.
    """
    if not path.exists():
        return
    with open(path, "r+b") as fh:
        data = fh.read()
        if data and not data.endswith(b"\n"):
            fh.truncate(data.rfind(b"\n") + 1)

