"""Safe file output: atomic writes and input protection.

Why: a crash or a bad flag must never leave a half-written artifact or clobber the user's
input model. Every writer in edgeprune goes through :func:`atomic_output`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator, NoReturn

from toolchain.core.errors import EdgepruneError, InputFileError, OutputError
from toolchain.core.owners import output_lock, owner_alive, owner_tag, staging_owner
from toolchain.core.progress import note

LOW_SPACE = 1 << 20  # a write that failed with less than this free failed for lack of space
# How libraries word a write that the disk refused, when they do not raise OSError (torch's zip writer, OpenVINO).
_WRITE_REFUSED = ("No space left on device", "inline_container.cc", "PytorchStreamWriter failed",
                  "basic_ios::clear: iostream error")


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
    Ctrl-C, the temporary file is removed and ``path`` is untouched. While the block runs this
    process holds ``path`` (:func:`toolchain.core.owners.output_lock`); staging that a dead run left
    for ``path`` is removed first; a failed write (no space, no permission, I/O) becomes one
    :class:`OutputError` naming ``path``.

    Args:
        path: final destination.
        suffix: suffix of the temporary file (defaults to the destination's), useful for
            writers that pick a format from the extension.
    """
    dest = Path(path)
    with output_lock(dest):
        created = _missing_parents(dest)
        # named before it exists, so that an interrupt arriving just after it is created still removes it
        tmp_path = dest.parent / f".{dest.name}.{owner_tag()}-{secrets.token_hex(4)}{suffix or dest.suffix}"
        done = False
        try:
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                remove_stale_staging(dest)
                os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except OSError as exc:
                raise write_failure(dest, exc, None) or exc from None
            yield tmp_path
            apply_umask(tmp_path)
            os.replace(tmp_path, dest)
            done = True
        except Exception as exc:
            _raise_as_output_error(dest, exc, tmp_path)
        finally:
            if tmp_path.exists():
                tmp_path.unlink()
            if not done:
                _remove_empty(created)


@contextlib.contextmanager
def staged_folder(dest: str | os.PathLike, replace: bool = True, resume: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``dest``; it becomes ``dest`` only when the block completes.

    A folder output therefore appears whole or not at all, also after an error or Ctrl-C. When
    ``dest`` exists it is replaced (``replace=True``) or the staged content is merged into it
    entry by entry (``replace=False``, for run folders that collect several outputs). Created
    parent folders that end up empty after a failure are removed again. Locking, stale staging
    and failed writes as in :func:`atomic_output`.

    With ``resume`` the staging folder a killed run left for ``dest`` (the newest, when several)
    is taken over, renamed as this run's, instead of a new one (:class:`OutputError` when there is
    none); if this run fails too, the folder is kept for another ``--resume``.
    """
    dest = Path(dest)
    with output_lock(dest):
        created = _missing_parents(dest)
        tmp = dest.parent / f".{dest.name}.{owner_tag()}-{secrets.token_hex(4)}"  # named first, as in atomic_output
        done = False
        try:
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                left = _dead_staging(dest)
                if resume:
                    _take_over(dest, left, tmp)
                    left = [entry for entry in left if entry.exists()]
                _remove(left)
                if not resume:
                    tmp.mkdir(mode=0o700)
            except OSError as exc:
                raise write_failure(dest, exc, None) or exc from None
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
        except Exception as exc:
            _raise_as_output_error(dest, exc, tmp)
        finally:
            if resume and not done and tmp.exists():
                # earlier runs' work the user asked to continue: a refused option or a second failure must not lose it
                note(f"kept {tmp} for another --resume")
            elif tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            if not done:
                _remove_empty(created)


def _dead_staging(dest: Path) -> list[Path]:
    """Staging entries beside ``dest`` whose owner is no longer running, newest first.

    Only ``kill -9`` (or a power cut) leaves these: a run that fails or is interrupted removes its own.
    """
    found = []
    with contextlib.suppress(OSError):
        for entry in dest.parent.iterdir():
            owner = staging_owner(entry.name, dest.name)
            if owner is not None and not owner_alive(*owner):
                found.append(entry)
    return sorted(found, key=lambda e: e.stat().st_mtime, reverse=True)


def _remove(left: list[Path]) -> None:
    for entry in left:
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        pid = entry.name.split(".ep", 1)[1].split("-", 1)[0]
        note(f"removed {entry}: staging left by process {pid}, which is no longer running")


def left_by_killed_run(dest: str | os.PathLike) -> Path | None:
    """The newest staging folder a run that is no longer running left for ``dest`` (what ``resume`` takes over)."""
    folders = [entry for entry in _dead_staging(Path(dest)) if entry.is_dir()]
    return folders[0] if folders else None


def remove_stale_staging(dest: str | os.PathLike) -> None:
    """Remove what runs that died (``kill -9``, a power cut) left staged for ``dest``, saying so."""
    _remove(_dead_staging(Path(dest)))


def _take_over(dest: Path, left: list[Path], mine: Path) -> None:
    """Rename the newest folder a killed run left for ``dest`` to this run's staging name ``mine``."""
    folders = [entry for entry in left if entry.is_dir()]
    if not folders:
        raise OutputError(f"--resume: nothing to resume for {dest}: no run that was killed left its staging "
                          f"folder beside it (a run that failed or was interrupted with Ctrl-C cleans up)")
    folders[0].rename(mine)
    note(f"resuming from {folders[0]}, left by a run that is no longer running")


def _raise_as_output_error(dest: Path, exc: Exception, staged: Path) -> NoReturn:
    """Re-raise ``exc``, as the :class:`OutputError` of :func:`write_failure` when the disk caused it."""
    failure = write_failure(dest, exc, staged)
    if failure is None:
        raise exc
    raise failure from None


def write_failure(dest: Path, exc: BaseException, staged: Path | None) -> OutputError | None:
    """The one sentence for a write that failed because of the disk, not the program; None otherwise.

    Why more than ``errno``: torch (``enforce fail at inline_container.cc``) and OpenVINO
    (``basic_ios::clear``) report a full disk as a plain RuntimeError, and a large block that did
    not fit can leave megabytes free; so their wording, or (almost) no space left on the output's
    filesystem, is read as lack of space.
    """
    if isinstance(exc, EdgepruneError):
        return None
    code = exc.errno if isinstance(exc, OSError) else None
    where = Path(getattr(exc, "filename", None) or dest)
    free = _free_bytes(where if where.exists() else dest.parent)
    written = _size(staged) if staged is not None else 0
    refused = code is None and any(sign in str(exc) for sign in _WRITE_REFUSED)
    if code in (errno.ENOSPC, errno.EDQUOT) or refused or (free is not None and free < LOW_SPACE):
        so_far = f"; {format_bytes(written)} were written when it failed" if written else ""
        return OutputError(f"no space left to write {shown(dest)}: its filesystem has {format_bytes(free or 0)} free"
                           f"{so_far}; free some space or choose another place")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {shown(where)}: {exc.strerror or 'permission denied'}")
    if code == errno.EIO:
        return OutputError(f"I/O error while writing {shown(where)}: the disk or the network filesystem failed")
    return None


def require_space(dest: str | os.PathLike, nbytes: int, what: str) -> None:
    """Refuse, before the work, to write about ``nbytes`` of ``what`` where less is free.

    ``nbytes`` should be a lower bound (the weights at the precision they are stored in), so a
    write that could fit is never refused.
    """
    dest = Path(dest)
    ancestor = dest.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    free = _free_bytes(ancestor)
    if free is not None and free < nbytes:
        raise OutputError(f"{what} {shown(dest).parent if what.endswith(' in') else shown(dest)} needs at least {format_bytes(nbytes)}, but its filesystem has "
                          f"{format_bytes(free)} free; free some space or choose another place")


def shown(path: str | os.PathLike) -> Path:
    """``path`` as the user knows it: a staging name (``.out.ep12-34-x1y2``) in it becomes the output's (``out``)."""
    parts = [re.sub(r"^\.(.+?)\.ep\d+-\d+-.*$", r"\1", part) for part in Path(path).parts]
    return Path(*parts)


def format_bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def _free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _size(path: Path) -> int:
    with contextlib.suppress(OSError):
        if path.is_dir():
            return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        return path.stat().st_size
    return 0


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
