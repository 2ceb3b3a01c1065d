"""Safe file output: atomic writes and input protection.

Why: a crash or a bad flag must never leave a half-written artifact or clobber the user's
input model. Every writer in edgeprune goes through :func:`atomic_output`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

from toolchain.errors import InputFileError


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only on success.

    Args:
        path: final destination.
        suffix: suffix of the temporary file (defaults to the destination's), useful for
            writers that pick a format from the extension.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or dest.suffix, dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


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
