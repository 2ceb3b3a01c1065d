"""Writing an artifact folder atomically and recording what it is in ``deploy.json``.

Why: every target writes the same kind of record (source hash, precision, calibration set,
sizes, fidelity), and a crashed export must not leave a folder that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import yaml

from toolchain.fileio import atomic_output

DEPLOY_JSON = "deploy.json"


@contextlib.contextmanager
def atomic_folder(dest: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``dest``; it replaces ``dest`` only on success."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def folder_bytes(path: Path) -> int:
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def write_deploy_record(out_dir: Path, record: dict) -> Path:
    path = Path(out_dir) / DEPLOY_JSON
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path


def read_deploy_record(path: Path) -> dict | None:
    """The deploy.json in ``path`` (a deploy folder) or beside it (an artifact inside one)."""
    path = Path(path)
    for candidate in (path / DEPLOY_JSON, path.parent / DEPLOY_JSON, path.parent.parent / DEPLOY_JSON):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    return None


def resolve_artifact(path: Path) -> Path:
    """A deploy folder → the artifact it records; anything else unchanged."""
    path = Path(path)
    if path.is_dir() and (path / DEPLOY_JSON).is_file():
        record = json.loads((path / DEPLOY_JSON).read_text())
        return path / record["artifact"]
    return path


def read_metadata(artifact: Path) -> dict:
    """metadata.yaml inside an artifact folder or beside an artifact file ({} if none)."""
    artifact = Path(artifact)
    folder = artifact if artifact.is_dir() else artifact.parent
    meta = folder / "metadata.yaml"
    return yaml.safe_load(meta.read_text()) if meta.is_file() else {}


def read_decoding(artifact: Path) -> tuple[dict | None, str]:
    """(head description, resize mode) an artifact's metadata records; an older artifact: (None, letterbox)."""
    ours = read_metadata(artifact).get("edgeprune") or {}
    return ours.get("head"), ours.get("resize") or "letterbox"
