"""Move a job's input files and output folder as bytes, so workers need no shared file system.

Why: on a real cluster a Ray task runs on a machine that cannot see the driver's disk. The
driver packs what a job reads (the model, its .weights, the data set: the folder a data.yaml
describes) into zip bytes that travel through Ray's object store; the worker unpacks them into
its own scratch folder, runs the job there, and sends its output folder back as zip bytes,
which the driver unpacks into the run folder. Paths inside the job's result that point into the
worker's scratch folder are rewritten to where the driver put the files.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import yaml

from toolchain.core.errors import InputFileError

DATA_YAML = "data.yaml"


def zip_folder(folder: Path) -> bytes:
    """Every file under ``folder`` (relative names), as zip bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def unzip_into(blob: bytes, folder: Path) -> None:
    """Unpack zip bytes made by :func:`zip_folder` or :func:`pack_inputs` into ``folder``, refusing escapes."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        for name in archive.namelist():
            target = (folder / name).resolve()
            if folder not in target.parents:
                raise InputFileError(f"a shipped archive holds {name!r}, which would land outside {folder}")
        archive.extractall(folder)


def pack_file(path: str | os.PathLike) -> bytes:
    """One file as zip bytes holding it under its own name."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.write(path, Path(path).name)
    return buffer.getvalue()


def dataset_root(data_yaml: str | os.PathLike) -> tuple[Path, dict]:
    """The folder holding every split a data.yaml names, and the yaml rewritten relative to it.

    Raises:
        InputFileError: a split lies outside the data set's ``path`` folder (it could not be shipped with it).
    """
    data_yaml = Path(data_yaml).resolve()
    data = yaml.safe_load(data_yaml.read_text())
    root = Path(data.get("path") or data_yaml.parent)
    root = (root if root.is_absolute() else data_yaml.parent / root).resolve()
    shipped = {k: v for k, v in data.items() if k != "path"}
    for split in ("train", "val", "test"):
        value = data.get(split)
        if not value:
            continue
        entries = value if isinstance(value, list) else [value]
        relative = []
        for entry in entries:
            where = Path(entry) if Path(entry).is_absolute() else root / entry
            where = where.resolve()
            if where != root and root not in where.parents:
                raise InputFileError(f"{data_yaml}: the {split} split {entry} lies outside the data set folder {root}; "
                                     "to ship it to workers, keep every split under the data.yaml's path")
            relative.append(where.relative_to(root).as_posix())
        shipped[split] = relative if isinstance(value, list) else relative[0]
    return root, shipped


def pack_dataset(data_yaml: str | os.PathLike) -> bytes:
    """The data set a data.yaml describes (images, labels and the yaml itself) as zip bytes.

    The yaml inside is rewritten to point at the unpacked folder (``path: .``), so the worker's copy
    is self-contained; label caches are left out (each worker builds its own).
    """
    root, shipped = dataset_root(data_yaml)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix != ".cache" and path.name != DATA_YAML:
                archive.write(path, path.relative_to(root).as_posix())
        archive.writestr(DATA_YAML, yaml.safe_dump({"path": ".", **shipped}, sort_keys=False))
    return buffer.getvalue()


def unpack_dataset(blob: bytes, folder: Path) -> Path:
    """Unpack :func:`pack_dataset` bytes; returns the local data.yaml (its ``path`` made absolute)."""
    unzip_into(blob, folder)
    data_yaml = Path(folder).resolve() / DATA_YAML
    data = yaml.safe_load(data_yaml.read_text())
    data["path"] = str(data_yaml.parent)
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    return data_yaml


def remap_paths(value, old_root: str, new_root: str):
    """``value`` (JSON-like) with every string under ``old_root`` moved under ``new_root``."""
    if isinstance(value, str):
        return new_root + value[len(old_root):] if value.startswith(old_root) else value
    if isinstance(value, dict):
        return {k: remap_paths(v, old_root, new_root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(remap_paths(v, old_root, new_root) for v in value)
    return value
