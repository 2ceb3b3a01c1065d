"""The folder mounted into the Vitis AI container: model, calibration images and the two scripts.

Layout (``/workspace`` inside the container)::

    config.json            sizes, folders, class names; format marker
    model/graph.json       the traced DPU graph (program.py)
    model/weights.npz      its float32 weights
    dpu_graph.py           rebuilds the graph as a torch module (torch + numpy only)
    quantize.py            vai_q_pytorch: calib, then test + export_xmodel
    compile.sh             vai_c_xir with the board's arch.json; tees compile.log
    calib/*.png            calibration images (train split), fitted into the input as the model expects
    eval/*.png             validation images, fitted likewise; the quantised model's outputs on them
                           come back in quantize_result/eval_outputs.npz

Why fitted PNGs: the container then needs no letterbox or stretch code of its own (one
implementation, :func:`toolchain.core.prepost.fit`), and the images are easy to inspect.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from toolchain.core.errors import InputFileError, ModelMismatchError
from toolchain.core.fileio import atomic_output
from toolchain.core.prepost import fit
from toolchain.models.imagedata import calibration_batches, image_files

TEMPLATES = Path(__file__).parent / "templates"
FORMAT = "edgeprune-vitis-workspace/1"
QUANTIZED_XMODEL = "quantize_result/DPUGraph_int.xmodel"  # vai_q_pytorch names it after the module class
EVAL_OUTPUTS = "quantize_result/eval_outputs.npz"
COMPILE_LOG = "compile.log"
INTERPRETER_TOLERANCE = 1e-4


EMBED_MARKER = "# edgeprune:embed "


def embedded_source(module_name: str) -> str:
    """The source text of a host module that a template embeds (``toolchain.core.prepost``...)."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.origin:
        raise ModuleNotFoundError(f"template embeds {module_name}, which cannot be found")
    return Path(spec.origin).read_text()


def render_template(name: str) -> str:
    """A template script's text with every ``# edgeprune:embed MODULE`` line replaced by that module's source.

    Why embed instead of copy: the board script needs the host's pre/post-processing and
    latency statistics but cannot import edgeprune; embedding at bundle time keeps one
    implementation, and tests check the embedded text is the host module's, byte for byte.
    """
    lines = []
    for line in (TEMPLATES / f"{name}.py").read_text().splitlines(keepends=True):
        if line.startswith(EMBED_MARKER):
            module_name = line[len(EMBED_MARKER):].strip()
            lines.append(f"# ---- {module_name}, embedded verbatim from edgeprune ----\n")
            lines.append(embedded_source(module_name))
            lines.append(f"# ---- end of {module_name} ----\n")
        else:
            lines.append(line)
    return "".join(lines)


def load_template(name: str):
    """Import a template script (``run_kv260``, ``dpu_graph``) as rendered, without installing it anywhere."""
    import sys
    import types

    module = types.ModuleType(f"edgeprune_vitis_{name}")
    module.__file__ = str(TEMPLATES / f"{name}.py")
    sys.modules[module.__name__] = module  # dataclasses look their module up while the class is built
    exec(compile(render_template(name), module.__file__, "exec"), module.__dict__)
    return module


@dataclass(frozen=True)
class Workspace:
    """A written workspace and what the host needs to read its results."""

    root: Path
    name: str
    calib_images: int
    eval_sources: tuple[str, ...]
    interpreter_max_abs_diff: float

    @property
    def quantized_xmodel(self) -> Path:
        return self.root / QUANTIZED_XMODEL

    @property
    def compiled_xmodel(self) -> Path:
        return self.root / "compiled" / f"{self.name}.xmodel"

    @property
    def compile_log(self) -> Path:
        return self.root / COMPILE_LOG

    @property
    def eval_outputs(self) -> Path:
        return self.root / EVAL_OUTPUTS


def _fresh(root: Path) -> None:
    """Empty ``root`` for a new workspace, refusing to delete a folder edgeprune did not write."""
    if root.exists():
        try:
            ours = json.loads((root / "config.json").read_text()).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise InputFileError(f"{root} exists and is not an edgeprune Vitis AI workspace; choose another --out")
        shutil.rmtree(root)
    (root / "model").mkdir(parents=True)


def _write_png(path: Path, image_bgr: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image_bgr):
        raise InputFileError(f"cannot write {path}")


def _calibration(root: Path, data: str, input_hw: tuple[int, int], count: int, resize: str) -> int:
    (root / "calib").mkdir()
    batches = calibration_batches(data, input_hw, count, resize=resize)  # what every other target calibrates on
    for i, batch in enumerate(batches):
        rgb = (batch[0].transpose(1, 2, 0) * 255.0).round().astype(np.uint8)
        _write_png(root / "calib" / f"{i:05d}.png", np.ascontiguousarray(rgb[..., ::-1]))
    return len(batches)


def _evaluation(root: Path, data: str, input_hw: tuple[int, int], count: int, resize: str) -> tuple[str, ...]:
    (root / "eval").mkdir()
    if count <= 0:
        return ()
    files = image_files(data, "val")
    picks = np.linspace(0, len(files) - 1, num=min(count, len(files))).round().astype(int)
    sources = []
    for i, k in enumerate(dict.fromkeys(picks.tolist())):
        image = cv2.imread(str(files[k]))
        if image is None:
            raise InputFileError(f"validation image {files[k]} cannot be read")
        _write_png(root / "eval" / f"{i:05d}.png", fit(image, input_hw, resize)[0])
        sources.append(str(files[k]))
    return tuple(sources)


def check_interpreter(program: dict, weights: dict, module: torch.nn.Module, example: torch.Tensor) -> float:
    """Max |dpu_graph.py rebuild - traced module| on ``example``; raises when they disagree."""
    rebuilt = load_template("dpu_graph").DPUGraph(program, weights).eval()
    with torch.inference_mode():
        ref, out = module(example), rebuilt(example)
    diff = max(float((a - b).abs().max()) for a, b in zip(ref, out))
    if len(ref) != len(out) or diff > INTERPRETER_TOLERANCE:
        raise ModelMismatchError(f"the rebuilt DPU graph differs from the model by {diff:.3g} (tolerance "
                                 f"{INTERPRETER_TOLERANCE}); this is an edgeprune bug, please report it")
    return diff


def _render_compile_script(arch_json: str, name: str, board: str) -> str:
    text = (TEMPLATES / "compile.sh").read_text()
    for key, value in (("@ARCH@", arch_json), ("@NAME@", name), ("@BOARD@", board), ("@XMODEL@", QUANTIZED_XMODEL),
                       ("@LOG@", COMPILE_LOG)):
        text = text.replace(key, value)
    return text


def write_workspace(root: Path, *, name: str, board: str, arch_json: str, program: dict, weights: dict,
                    module: torch.nn.Module, example: torch.Tensor, data: str, calib_images: int, eval_images: int,
                    names: dict, head: dict, resize: str = "letterbox") -> Workspace:
    """Write everything the container needs under ``root`` (replacing an older edgeprune workspace)."""
    root = Path(root)
    diff = check_interpreter(program, weights, module, example)
    _fresh(root)
    with atomic_output(root / "model" / "graph.json") as tmp:
        tmp.write_text(json.dumps(program))
    with atomic_output(root / "model" / "weights.npz", suffix=".npz") as tmp:
        np.savez(tmp, **weights)
    input_hw = (int(example.shape[-2]), int(example.shape[-1]))
    n_calib = _calibration(root, data, input_hw, calib_images, resize)
    eval_sources = _evaluation(root, data, input_hw, eval_images, resize)
    for script in ("dpu_graph", "quantize"):
        (root / f"{script}.py").write_text(render_template(script))
    (root / "compile.sh").write_text(_render_compile_script(arch_json, name, board))
    (root / "compile.sh").chmod(0o755)
    config = {"format": FORMAT, "name": name, "board": board, "imgsz": list(input_hw), "graph": "model/graph.json",
              "weights": "model/weights.npz", "calib_dir": "calib", "eval_dir": "eval", "batch": 8,
              "output_dir": "quantize_result", "names": {str(k): v for k, v in names.items()}, "head": head,
              "eval_sources": list(eval_sources)}
    with atomic_output(root / "config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=2))
    return Workspace(root, name, n_calib, eval_sources, diff)
