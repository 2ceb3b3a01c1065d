"""Who writes an output: one run per ``--out`` at a time, and staging that names its owner.

Why: two runs writing one output both reported success while only the last one's result was
left; a run killed with ``kill -9`` (the OOM killer, a power cut) left its hidden staging folder
beside ``--out`` forever. An OS file lock (``flock``) is released by the kernel when its process
dies however it dies, so it cannot go stale; a staging name that carries the owner's PID *and*
start time tells a dead owner from a live one even after the PID is reused.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import fcntl
import hashlib
import os
import re
import sys
import time
from pathlib import Path
from typing import Iterator

from toolchain.core.cache import cache_dir
from toolchain.core.errors import OutputError
from toolchain.core.progress import note

_WAIT: contextvars.ContextVar[bool] = contextvars.ContextVar("edgeprune_wait_for_outputs", default=False)
_HELD: dict[str, list] = {}  # realpath of an output -> [lock file path, fd, depth]


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (``/proc``), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name in (...) may hold spaces


def owner_tag() -> str:
    """This process as it appears in staging names: ``ep<pid>-<start>``."""
    return f"ep{os.getpid()}-{process_start(os.getpid()) or 0}"


def owner_alive(pid: int, start: int) -> bool:
    """Whether the process that wrote ``ep<pid>-<start>`` is still running (not a later one with its PID)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    now = process_start(pid)
    return now is None or start == 0 or now == start


def staging_owner(name: str, dest_name: str) -> tuple[int, int] | None:
    """``(pid, start)`` when ``name`` is a staging entry of an output called ``dest_name``, else None."""
    match = re.match(re.escape(f".{dest_name}.") + r"ep(\d+)-(\d+)-", name)
    return (int(match.group(1)), int(match.group(2))) if match else None


@contextlib.contextmanager
def waiting_for_outputs(wait: bool) -> Iterator[None]:
    """Inside the block, an output held by another run is waited for instead of refused (``--wait``)."""
    token = _WAIT.set(wait)
    try:
        yield
    finally:
        _WAIT.reset(token)


def set_waiting_for_outputs(wait: bool) -> None:
    """Set ``--wait`` for the rest of this invocation (the CLI's group option; contexts nest inside it)."""
    _WAIT.set(wait)


def _describe_holder(path: Path) -> str:
    with contextlib.suppress(OSError):
        text = path.read_text().strip()
        if text:
            return text
    return "another process"


@contextlib.contextmanager
def output_lock(dest: str | os.PathLike) -> Iterator[None]:
    """Hold ``dest`` for this run: a second run on the same output refuses at once, or waits with ``--wait``.

    Re-entrant within a process (the CLI takes the lock when it parses ``--out``; the writer
    that stages the output takes it again). The lock file is removed on release; a waiter that
    locked a file removed meanwhile notices (its inode is gone) and locks the new one.

    Raises:
        OutputError: another run holds ``dest`` and ``--wait`` was not given (names that run).
    """
    key = os.path.realpath(dest)
    if key in _HELD:
        _HELD[key][2] += 1
        try:
            yield
        finally:
            _HELD[key][2] -= 1
        return
    # Lock files live in edgeprune's cache, outside the user's folders: a killed run leaves nothing beside --out.
    path = cache_dir("locks") / (hashlib.sha1(key.encode()).hexdigest()[:20] + ".lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(path)
            if not _WAIT.get():
                os.close(fd)
                raise OutputError(f"{dest} is being written by another run ({holder}); wait for it to finish, "
                                  "or pass --wait (edgeprune --wait ...) to queue behind it") from None
            note(f"waiting for {dest}: it is being written by another run ({holder})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}, started {time.strftime('%H:%M:%S')}: "
                 f"{' '.join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))}".encode())
    _HELD[key] = [path, fd, 1]
    try:
        yield
    finally:
        _release(key)


def _release(key: str) -> None:
    path, fd, _ = _HELD.pop(key)
    with contextlib.suppress(OSError):
        os.unlink(path)  # while still locked: a waiter re-checks the inode
    os.close(fd)


@atexit.register
def release_all_outputs() -> None:
    """Release every output this process holds and remove the lock files (the kernel would release the locks).

    At exit, for locks taken while parsing a command line that then failed (never exited); and by
    the CLI before it ends itself on Ctrl-C, without Python's shutdown.
    """
    for key in list(_HELD):
        _release(key)
