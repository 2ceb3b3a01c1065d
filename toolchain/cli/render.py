"""Output for every command: a readable table, or JSON with ``--json``; errors as one line.

Why here: commands differ in what they compute, not in how they talk to the user. With
``--json`` stdout carries only the JSON document (library chatter, e.g. Ultralytics' logs,
is moved to stderr at the file-descriptor level), so ``edgeprune ... --json | jq`` works.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import asdict, is_dataclass
from typing import Iterator, Sequence

import click
from rich.console import Console
from rich.table import Table

from toolchain.core.formatting import fmt

EXIT_USER_ERROR = 2


def console(stderr: bool = False) -> Console:
    """A rich console; 140 columns when not a terminal (rich would pick 80 and squeeze tables)."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=None if stream.isatty() else 140)


def to_jsonable(obj):
    """Dataclasses (via ``to_json`` when they have one), tuples and paths to plain JSON types."""
    if hasattr(obj, "to_json"):
        return to_jsonable(obj.to_json())
    if is_dataclass(obj):
        return to_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def print_json(result) -> None:
    click.echo(json.dumps(to_jsonable(result), indent=2))


@contextlib.contextmanager
def stdout_to_stderr(active: bool) -> Iterator[None]:
    """While active, send everything written to fd 1 (Python or C code) to fd 2."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):  # Python-level writers too (loggers resolving sys.stdout)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence], caption: str | None = None) -> Table:
    t = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*[fmt(v) for v in row])
    return t


def fail(message: str, as_json: bool) -> None:
    """Report a user error in one sentence and exit with code 2."""
    if as_json:
        click.echo(json.dumps({"error": message}))
    click.echo(f"edgeprune: error: {message}", err=True)
    sys.exit(EXIT_USER_ERROR)


class Progress:
    """What a long step is doing, on stderr: a spinner and message, plus a bar with ETA once the count is known.

    ``update(message)`` changes the text (drop-in for rich's ``status.update``); ``advance(done,
    total)`` shows the bar, elapsed time and the time remaining. Nothing goes to stdout, so
    ``--json`` output stays clean; on a non-terminal stderr rich draws nothing.
    """

    def __init__(self, description: str):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._rich = RichProgress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                  console=console(stderr=True), transient=True)
        self._task = self._rich.add_task(description, total=None)

    def __enter__(self) -> "Progress":
        from toolchain.core.progress import reporting_to

        self._rich.start()
        self._bound = reporting_to(self)  # library phases (export, calibration, evaluation...) report here
        self._bound.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._bound.__exit__(*exc)
        self._rich.stop()

    def update(self, message: str) -> None:
        self._rich.update(self._task, description=message)

    def advance(self, done: int, total: int | None = None) -> None:
        self._rich.update(self._task, completed=done, total=total)


def progress(description: str) -> Progress:
    return Progress(description)
