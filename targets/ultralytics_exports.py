"""What a user would pick instead of edgeprune: Ultralytics' own exports of the unpruned model.

Why: a speedup means something only against the alternative a user already has, which is
``yolo export format=openvino|onnx`` at FP32, FP16 or INT8, run by the same runtime on the
same device. These exports are built here with Ultralytics' exporter itself (a copy of the
checkpoint in a work folder, since the exporter writes beside its input), measured in the same
run with the same settings as edgeprune's artifacts, and the best of them is the base every
speedup is divided by (:func:`best_reference`). The f32-forced edgeprune IR is never the base.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from toolchain.core.device import open_yolo
from toolchain.core.errors import EdgepruneError
from toolchain.core.cache import cache_dir
from toolchain.core.fileio import sha256_of

FORMATS = {"openvino": "openvino", "onnx": "onnx"}  # edgeprune target -> Ultralytics export format
QUANTIZE = {"fp32": 32, "fp16": 16, "int8": 8}


@dataclass(frozen=True)
class ReferenceExport:
    """One Ultralytics export of the unpruned model."""

    label: str  # e.g. "Ultralytics openvino FP16"
    target: str  # edgeprune target that runs it
    precision: str  # what was asked of the exporter: fp32, fp16, int8
    artifact: str


def reference_dir(checkpoint: str | Path, imgsz: int, data: str | None) -> Path:
    """Where the exports of ``checkpoint`` at ``imgsz`` (calibrated on ``data``) are kept: edgeprune's cache."""

    key = sha256_of(checkpoint)[:16] + f"-{imgsz}" + (f"-{sha256_of(data)[:8]}" if data else "")
    return cache_dir("ultralytics-exports") / key


def build_ultralytics_exports(checkpoint: str | Path, target: str, imgsz: int, data: str | None = None,
                              precisions: tuple[str, ...] = ("fp32", "fp16", "int8"), work_dir: str | Path | None = None,
                              progress=None) -> list[ReferenceExport]:
    """Export ``checkpoint`` with Ultralytics' exporter once per precision (reusing exports already made).

    INT8 needs ``data`` (Ultralytics calibrates on its images) and is skipped without it. The
    exports go to ``work_dir`` (default: :func:`reference_dir`, edgeprune's cache).

    Raises:
        EdgepruneError: a target Ultralytics does not export to, or an export that fails.
    """

    if target not in FORMATS:
        raise EdgepruneError(f"Ultralytics exports to {', '.join(FORMATS)}, not to the {target} target")
    work_dir = Path(work_dir) if work_dir else reference_dir(checkpoint, imgsz, data)
    exports = []
    for precision in precisions:
        if precision == "int8" and not data:
            continue
        folder = work_dir / f"ultralytics-{target}-{precision}"
        done = folder / "artifact.txt"
        if not done.is_file():
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            copy = folder / Path(checkpoint).name
            shutil.copyfile(checkpoint, copy)
            if progress:
                progress(f"Ultralytics export: {target} {precision}")
            args = {"format": FORMATS[target], "imgsz": imgsz, "quantize": QUANTIZE[precision], "device": "cpu"}
            if precision == "int8":
                args["data"] = str(data)
            try:
                artifact = open_yolo(str(copy)).export(**args)
            except Exception as exc:  # the exporter raises many types; the user needs the sentence
                raise EdgepruneError(f"Ultralytics' {target} {precision} export of {checkpoint} failed: "
                                     f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
            copy.unlink()
            done.write_text(str(artifact))
        exports.append(ReferenceExport(f"Ultralytics {target} {precision.upper()}", target, precision,
                                       done.read_text().strip()))
    return exports


def fastest(entries: list[dict]) -> dict | None:
    """The fastest of measured references recorded as dicts with an ``fps`` key (None when there are none)."""
    return max(entries, key=lambda r: r["fps"]) if entries else None


def best_reference(results: list) -> object:
    """The fastest of the references' measurements (the base of every speedup)."""
    if not results:
        raise EdgepruneError("no Ultralytics export was measured; nothing to compare against")
    return max(results, key=lambda r: r.throughput_fps)
