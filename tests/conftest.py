"""Shared fixtures: the synthetic data set, the committed trained baseline, and pruned copies.

The data set is regenerated from its seed (seconds) and cached under ``.cache/``; the trained
baseline is committed (``assets/yolov8n-synth.pt``, reproduced by ``make baseline``) because
training it takes ~12 minutes on 2 cores. Tests check the baseline really scores on the
regenerated data, so a stale model fails loudly instead of making accuracy tests vacuous.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"
# edgeprune's own cache (reference exports, device profiles) stays inside the checkout, never in the home folder
os.environ.setdefault("EDGEPRUNE_CACHE", str(CACHE / "edgeprune"))
BASELINE = REPO / "assets" / "yolov8n-synth.pt"


def _cached_dataset(name: str, **kwargs) -> Path:
    """Generate (once) a synthetic data set under .cache/ and return its data.yaml."""
    from toolchain.core.synth import SynthConfig, generate

    root = CACHE / name
    data_yaml = root / "data.yaml"
    if not data_yaml.exists():
        if root.exists():
            shutil.rmtree(root)
        generate(root, SynthConfig(**kwargs))
    return data_yaml


@pytest.fixture(scope="session")
def synth_data() -> Path:
    """The default synthetic set (400 train / 100 val, 256 px, 3 classes, seed 0): the baseline's data."""
    return _cached_dataset("synth-default")


@pytest.fixture(scope="session")
def synth_data_416() -> Path:
    """The same set drawn at 416 px (`make baseline-416`'s data): the seed users' resolution."""
    return _cached_dataset("synth-416", imgsz=416)


@pytest.fixture(scope="session")
def synth_data_640() -> Path:
    """The same set drawn at 640 px (`make baseline-640-converged`'s data), the resolution most users run."""
    return _cached_dataset("synth-640", imgsz=640)


@pytest.fixture(scope="session")
def baseline_pt() -> Path:
    """The committed yolov8n trained on :func:`synth_data`."""
    assert BASELINE.exists(), f"{BASELINE} is missing; run `make baseline` to reproduce it"
    return BASELINE


@pytest.fixture(scope="session")
def baseline_card() -> dict:
    return json.loads(BASELINE.with_suffix(".json").read_text())


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("session")


@pytest.fixture(scope="session")
def small_data(session_tmp):
    """64 train / 16 val images, 256 px, 3 classes: enough for 1-2 epoch runs and quick validation."""
    from toolchain.core.synth import SynthConfig, generate

    root = session_tmp / "small-synth"
    generate(root, SynthConfig(train=64, val=16, imgsz=256))
    return root / "data.yaml"


@pytest.fixture(scope="session")
def micro_data(session_tmp):
    """8 train / 12 val images, 256 px, 3 classes: INT8 calibration and an mAP in seconds."""
    from toolchain.core.synth import SynthConfig, generate

    root = session_tmp / "micro-synth"
    generate(root, SynthConfig(train=8, val=12, imgsz=256, seed=3))
    return root / "data.yaml"


@pytest.fixture(scope="session")
def pruned50(baseline_pt, session_tmp):
    """The baseline pruned at ratio 0.5 (L1, local) and its report."""
    from toolchain.models.pruning import PruneConfig
    from toolchain.models.prune_job import prune_file

    out = session_tmp / "pruned50.pt"
    report = prune_file(str(baseline_pt), str(out), PruneConfig(ratio=0.5, imgsz=256))
    return out, report


@pytest.fixture(scope="session")
def random_yolo(session_tmp):
    """Factory: an untrained Ultralytics checkpoint (any task) built offline from a shipped yaml."""
    from toolchain.models.checkpoint import save_model
    from toolchain.models.loading import LoadedModel
    from toolchain.models.zoo import build

    made: dict[str, Path] = {}

    def make(yaml_name: str, nc: int = 3) -> Path:
        if (yaml_name, nc) not in made:
            model, _task = build(yaml_name, nc)
            path = session_tmp / yaml_name.replace(".yaml", ".pt" if nc == 3 else f"-nc{nc}.pt")
            save_model(LoadedModel(str(path), "ultralytics", model, {}), model, path)
            made[(yaml_name, nc)] = path
        return made[(yaml_name, nc)]

    return make


# Runs in a fresh interpreter where importing edgeprune's packages fails: what a user of plain
# Ultralytics gets. Prints the shapes of the outputs users consume and the predict() result count.
_RELOAD = r"""
import json, sys
for name in ("toolchain", "targets", "cfg_codegen", "edgeprune"):
    sys.modules[name] = None
import numpy as np, torch
from ultralytics import YOLO
path, size = sys.argv[1], int(sys.argv[2])
yolo = YOLO(path)
model = yolo.model.float().eval()
with torch.no_grad():
    out = model(torch.zeros(1, 3, size, size))
if isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[1], dict):
    out = out[0]
def flat(o):
    if isinstance(o, torch.Tensor):
        return [list(o.shape)]
    if isinstance(o, dict):
        o = list(o.values())
    return [s for v in o for s in flat(v)]
results = yolo.predict(np.zeros((size, size, 3), np.uint8), imgsz=size, verbose=False)
print(json.dumps({"shapes": flat(out), "results": len(results), "task": yolo.task}))
"""


@pytest.fixture(scope="session")
def reload_without_edgeprune():
    """Function ``(path, size) -> {"shapes", "results", "task"}`` run in plain Ultralytics, edgeprune unimportable."""
    import subprocess
    import sys

    def run(path, size: int) -> dict:
        proc = subprocess.run([sys.executable, "-c", _RELOAD, str(path), str(size)], capture_output=True, text=True,
                              cwd="/", timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return run


# Artifacts of the committed baseline, deployed once per session and shared by target, pipeline and CLI tests.
DEPLOY_IMGSZ = 256


@pytest.fixture(scope="session")
def deployed(baseline_pt, synth_data, session_tmp):
    """Deploy the baseline once per (target, precision); INT8 calibrates on 100 training images."""
    from targets.base import ExportConfig
    from toolchain.pipelines.deploy import deploy

    cache = {}

    def get(target: str, precision: str):
        key = (target, precision)
        if key not in cache:
            cfg = ExportConfig(precision=precision, imgsz=DEPLOY_IMGSZ, data=str(synth_data), calib_images=100)
            name = f"deploy-{target}-{precision}" + ("_openvino_model" if target == "openvino" else "")
            cache[key] = deploy(target, str(baseline_pt), session_tmp / name, cfg)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def deploy_ir(deployed):
    """The deploy folder of the FP32 OpenVINO IR (static 256x256)."""
    return deployed("openvino", "fp32").deploy_json.rsplit("/", 1)[0]


@pytest.fixture(scope="session")
def deploy_onnx(deployed):
    return deployed("onnx", "fp32").deploy_json.rsplit("/", 1)[0]
