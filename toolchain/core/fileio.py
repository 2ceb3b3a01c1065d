"""Safe file output: atomic writes and input protection.

Why: a crash or a bad flag must never leave a half-written artifact or clobber the user's
input model. Every writer in edgeprune goes through :func:`atomic_output`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

from toolchain.core.errors import InputFileError


def _umask() -> int:
    """The process umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: str | os.PathLike) -> None:
    """Give a staged file or folder tree the mode a plain ``open``/``mkdir`` would have had.

    Why: ``mkstemp``/``mkdtemp`` create 0600/0700 entries on purpose (nobody reads a half-written
    file), but once complete the output must look like any other file the user creates: 0644
    files and 0755 folders under umask 022.
    """
    mask = _umask()
    root = Path(path)
    entries = [root, *root.rglob("*")] if root.is_dir() else [root]
    for entry in entries:
        if entry.is_symlink():
            continue
        executable = entry.is_dir() or entry.stat().st_mode & 0o100  # scripts stay runnable
        entry.chmod((0o777 if executable else 0o666) & ~mask)


def check_output(path: str | os.PathLike, kind: str = "file", option: str = "--out") -> Path:
    """Refuse, before any work, an output location that cannot be written.

    Checks that ``path`` is not a folder when a file is expected (or a file when a folder is),
    that its nearest existing ancestor is a writable folder (probed with a temporary file, so
    read-only mounts and ``/proc`` fail here, not after minutes of pruning), and creates nothing.

    Raises:
        InputFileError: naming the option, the path and what is wrong with it.
    """
    dest = Path(path).expanduser()
    if dest.exists() or dest.is_symlink():
        if kind == "file" and dest.is_dir():
            raise InputFileError(f"{option} {dest} is a folder; expected a file path")
        if kind == "dir" and not dest.is_dir():
            raise InputFileError(f"{option} {dest} is a file; expected a folder")
    ancestor = dest.parent if not dest.exists() else dest if dest.is_dir() else dest.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputFileError(f"{option} {dest} cannot be created: {ancestor} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgeprune-probe-", dir=ancestor)
    except OSError as exc:
        raise InputFileError(f"{option} {dest} cannot be written: {ancestor} is not writable "
                             f"({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)
    return dest


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success.

    The finished file gets the user's umask (see :func:`apply_umask`); on any error, including
    Ctrl-C, the temporary file is removed and ``path`` is untouched.

    Args:
        path: final destination.
        suffix: suffix of the temporary file (defaults to the destination's), useful for
            writers that pick a format from the extension.
    """
    dest = Path(path)
    created = _missing_parents(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or dest.suffix, dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    done = False
    try:
        yield tmp_path
        apply_umask(tmp_path)
        os.replace(tmp_path, dest)
        done = True
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
        if not done:
            _remove_empty(created)


@contextlib.contextmanager
def staged_folder(dest: str | os.PathLike, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside ``dest``; it becomes ``dest`` only when the block completes.

    A folder output therefore appears whole or not at all, also after an error or Ctrl-C. When
    ``dest`` exists it is replaced (``replace=True``) or the staged content is merged into it
    entry by entry (``replace=False``, for run folders that collect several outputs). Created
    parent folders that end up empty after a failure are removed again.
    """
    dest = Path(dest)
    created = _missing_parents(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    done = False
    try:
        yield tmp
        apply_umask(tmp)
        if dest.exists() and not replace:
            for entry in tmp.iterdir():
                target = dest / entry.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.replace(entry, target)
        else:
            if dest.exists():
                shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
            tmp.rename(dest)
        done = True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            _remove_empty(created)


def _missing_parents(dest: Path) -> list[Path]:
    """The parent folders of ``dest`` that do not exist yet, innermost first."""
    missing, parent = [], dest.parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders this process created for an output that failed, if they stayed empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def ensure_not_input(out: str | os.PathLike, *inputs: str | os.PathLike) -> None:
    """Refuse an output path that would overwrite one of the inputs."""
    out_resolved = Path(out).resolve()
    for src in inputs:
        if src is not None and Path(src).resolve() == out_resolved:
            raise InputFileError(f"output {out} is the input file; choose another --out so the input is kept")


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def zip_compressed_size(path: str | os.PathLike) -> int:
    """Bytes of ``path`` after DEFLATE in a zip: the "compressed size" pruning write-ups quote.

    Zeros from unstructured pruning compress well, so this shows what sparsity buys on disk
    even when it buys nothing at run time.
    """
    with tempfile.TemporaryFile() as buf:
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            zf.write(path, arcname=Path(path).name)
        buf.seek(0, os.SEEK_END)
        return buf.tell()


def cache_dir(kind: str) -> Path:
    """edgeprune's own cache folder for ``kind`` (``$EDGEPRUNE_CACHE/kind``, default ``~/.cache/edgeprune/kind``).

    Why: things derived from a user's files (reference exports, measured tables) are reused
    between runs, but never written into the user's folders.
    """
    root = Path(os.environ.get("EDGEPRUNE_CACHE") or Path.home() / ".cache" / "edgeprune")
    folder = root / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder
