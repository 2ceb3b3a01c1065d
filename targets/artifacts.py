"""Writing an artifact folder atomically and recording what it is in ``deploy.json``.

Why: every target writes the same kind of record (source hash, precision, calibration set,
sizes, fidelity), and a crashed export must not leave a folder that looks finished.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from toolchain.core.errors import InputFileError
from toolchain.core.fileio import atomic_output

DEPLOY_JSON = "deploy.json"


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
            return _read_json(candidate)
    return None


def _read_json(path: Path) -> dict:
    """A deploy.json, or an error naming it and the line where it stops being JSON."""
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise InputFileError(f"{path} is not valid JSON{where}; redeploy or remove it") from None
    if not isinstance(record, dict) or not isinstance(record.get("artifact"), str):
        raise InputFileError(f"{path} is not an edgeprune deploy record (expected an object with 'artifact')")
    return record


def resolve_artifact(path: Path) -> Path:
    """A deploy folder → the artifact it records; anything else unchanged."""
    path = Path(path)
    if path.is_dir() and (path / DEPLOY_JSON).is_file():
        record = _read_json(path / DEPLOY_JSON)
        return path / record["artifact"]
    return path


def read_metadata(artifact: Path) -> dict:
    """metadata.yaml inside an artifact folder or beside an artifact file ({} if none)."""
    artifact = Path(artifact)
    folder = artifact if artifact.is_dir() else artifact.parent
    meta = folder / "metadata.yaml"
    if not meta.is_file():
        return {}
    try:
        data = yaml.safe_load(meta.read_text())
    except (yaml.YAMLError, UnicodeDecodeError):
        raise InputFileError(f"{meta} is not valid YAML; redeploy or remove it") from None
    if not isinstance(data, dict):
        raise InputFileError(f"{meta} is not an artifact's metadata (expected a mapping)")
    return data


def read_decoding(artifact: Path) -> tuple[dict | None, str]:
    """(head description, resize mode) an artifact's metadata records; an older artifact: (None, letterbox)."""
    ours = read_metadata(artifact).get("edgeprune") or {}
    return ours.get("head"), ours.get("resize") or "letterbox"
