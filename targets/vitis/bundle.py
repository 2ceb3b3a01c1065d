"""The folder copied to the board: compiled xmodel, metadata.yaml and run_kv260.py.

``metadata.yaml`` is Ultralytics' metadata (names, stride, imgsz...) plus what the board needs to
feed the DPU and decode its raw maps (``edgeprune.head`` and ``edgeprune.resize``, the same keys
every artifact carries) and the bundle's facts (``edgeprune.vitis``). It is written as JSON text: valid YAML for every
YAML reader, and readable on the board with the standard library alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from targets.vitis.workspace import render_template
from toolchain.core.fileio import staged_folder

BOARD_SCRIPT = "run_kv260.py"
LAYOUTS = {
    "dfl": "one int8 NHWC map per stride: [4*reg_max box logits | nc class logits]; decode on the board CPU",
    "darknet": "one int8 NHWC map per [yolo] layer: anchors x (5 + nc) raw values; Darknet decode on the board CPU",
}


def board_metadata(source, spec, dpu: str, board: str, xmodel_name: str) -> dict:
    meta = source.metadata("int8")
    head = spec.to_json()
    meta["edgeprune"]["head"] = head  # the DPU graph ends before any decode
    meta["edgeprune"]["vitis"] = {"xmodel": xmodel_name, "board": board, "dpu": dpu, "layout": LAYOUTS[head["format"]]}
    return meta


def write_bundle(folder: Path, xmodel: Path, metadata: dict) -> Path:
    """Write the bundle atomically; returns its folder."""
    folder = Path(folder)
    with staged_folder(folder) as tmp:
        shutil.copyfile(xmodel, tmp / metadata["edgeprune"]["vitis"]["xmodel"])
        (tmp / "metadata.yaml").write_text(json.dumps(metadata, indent=2, default=str) + "\n")
        (tmp / BOARD_SCRIPT).write_text(render_template(Path(BOARD_SCRIPT).stem))
        (tmp / BOARD_SCRIPT).chmod(0o755)
    return folder
