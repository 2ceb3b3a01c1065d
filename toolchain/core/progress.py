"""Where long library work says what it is doing: a phase message, and a count with ETA when known.

Why a context variable rather than a ``progress`` argument on every function: the steps that
take time (export, INT8 calibration, fidelity, evaluation, candidate measurements) sit several
calls deep inside each target's code, behind the :class:`targets.base.Target` interface. The
caller that shows progress (the CLI's rich bar, or an API user's own object) binds a sink with
:func:`reporting_to`; library code calls :func:`step` and :func:`advance`, which do nothing
when no sink is bound (tests, library use without progress).

A sink is any object with ``update(message)`` and ``advance(done, total)``.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from typing import Iterator, Protocol


class Sink(Protocol):
    def update(self, message: str) -> None: ...

    def advance(self, done: int, total: int | None = None) -> None: ...


_SINK: contextvars.ContextVar[Sink | None] = contextvars.ContextVar("edgeprune_progress", default=None)


@contextlib.contextmanager
def reporting_to(sink: Sink | None) -> Iterator[None]:
    """Send :func:`step`/:func:`advance` calls made inside the block to ``sink`` (None: keep the current one)."""
    if sink is None:
        yield
        return
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


def step(message: str) -> None:
    """Name the phase now running (e.g. "exporting fp32", "calibrating INT8 on 300 images")."""
    sink = _SINK.get()
    if sink is not None:
        sink.update(message)


def advance(done: int, total: int | None = None) -> None:
    """``done`` of ``total`` items of the current phase are finished (drives the bar and its ETA)."""
    sink = _SINK.get()
    if sink is not None:
        sink.advance(done, total)


def note(message: str) -> None:
    """Tell the user something they should know about the run (not a phase), e.g. what was cleaned up.

    Why logging: a library must not print; the CLI shows the ``edgeprune`` logger's warnings as
    one line each on stderr, and an API user's own logging configuration decides for them.
    """
    logging.getLogger("edgeprune").warning(message)
