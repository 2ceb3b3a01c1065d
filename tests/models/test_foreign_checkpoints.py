"""Checkpoints made elsewhere: older Ultralytics pickles, stale Windows paths, no EMA, fp16 weights.

The foreign checkpoint is built from the committed trained baseline (real weights), saved in
torch's legacy serialization with two things only an old Windows training run leaves behind:
``train_args`` holding a ``pathlib.WindowsPath`` and an ``IterableSimpleNamespace`` from the
Ultralytics 8.0 module path ``ultralytics.yolo.utils``. Every path in it names nothing here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import torch

from toolchain.core.device import resolve_device
from toolchain.core.errors import EdgepruneError
from toolchain.core.fileio import sha256_of
from toolchain.models.loading import load_model


def _legacy_ultralytics_checkpoint(baseline_pt, out, imgsz: int | None):
    from pathlib import PurePosixPath

    from ultralytics.utils import IterableSimpleNamespace

    model = load_model(baseline_pt).model.half()  # the trainer stores fp16 weights
    args = {"task": "detect", "mode": "train", "model": "C:\\Users\\ana\\models\\yolov8n.pt",
            "data": PurePosixPath("C:\\Users\\ana\\datasets\\cones\\data.yaml"),
            "project": "C:\\Users\\ana\\runs", "name": "cones", "epochs": 40, "batch": 16,
            "hyp": IterableSimpleNamespace(lr0=0.01)}
    if imgsz is not None:
        args["imgsz"] = imgsz
    payload = {"epoch": 39, "best_fitness": 0.8, "model": model, "optimizer": None, "train_args": args,
               "date": datetime(2023, 9, 1).isoformat(), "version": "8.0.196"}  # no "ema" key at all
    torch.save(payload, out, _use_new_zipfile_serialization=False)
    raw = out.read_bytes()
    raw = raw.replace(b"pathlib\nPurePosixPath\n", b"pathlib\nWindowsPath\n")  # as pickled on Windows
    raw = raw.replace(b"ultralytics.utils\nIterableSimpleNamespace\n", b"ultralytics.yolo.utils\nIterableSimpleNamespace\n")
    assert b"WindowsPath" in raw and b"ultralytics.yolo.utils" in raw
    out.write_bytes(raw)
    return out


def _edgeprune(*args):
    proc = subprocess.run([sys.executable, "-m", "toolchain.cli.main", *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), proc.stderr


def test_loads_and_reports_the_training_size(baseline_pt, tmp_path):
    with_size = _legacy_ultralytics_checkpoint(baseline_pt, tmp_path / "a.pt", imgsz=256)
    without = _legacy_ultralytics_checkpoint(baseline_pt, tmp_path / "b.pt", imgsz=None)
    a, b = load_model(with_size), load_model(without)
    assert a.train_imgsz == 256 and b.train_imgsz == 640
    assert next(a.model.parameters()).dtype == torch.float32
    assert a.nc == 3


@pytest.mark.full  # 43 s; make test keeps the foreign checkpoints' prune at 640 below
def test_prune_finetune_eval_a_foreign_checkpoint(baseline_pt, synth_data, tmp_path):
    src = _legacy_ultralytics_checkpoint(baseline_pt, tmp_path / "foreign.pt", imgsz=256)
    digest = sha256_of(src)
    report, err = _edgeprune("prune", src, "--ratio", "0.3", "--out", tmp_path / "p.pt", "--latency-iters", 0, "--json")
    assert report["input_shape"] == [1, 3, 256, 256]  # the checkpoint's own size, announced:
    assert "imgsz 256" in err
    assert report["ratios"]["macs"] < 0.8
    ft, _ = _edgeprune("finetune", tmp_path / "p.pt", "--data", synth_data, "--epochs", 1, "--workers", 0,
                       "--device", "cpu", "--out", tmp_path / "ft", "--json")
    assert ft["params"] == report["after"]["params"]  # the pruned architecture was trained, not a rebuilt yaml
    scores, err = _edgeprune("eval", ft["weights"], "--data", synth_data, "--json")
    assert "imgsz 256" in err
    assert scores["imgsz"] == 256
    assert scores["map50"] > 0.05, scores  # real weights: still detects after pruning and 1 epoch (0.17 measured)
    assert sha256_of(src) == digest


def test_device_auto_and_cpu_resolve_here():
    assert resolve_device("cpu").ultralytics == "cpu"
    expected = "0" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").ultralytics == expected
    assert resolve_device("auto").amp == (expected != "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "0"])
def test_cuda_device_is_selected_and_refused_clearly_without_cuda(spec, monkeypatch):
    with pytest.raises(EdgepruneError, match="asks for CUDA, but torch sees no CUDA device"):
        resolve_device(spec)
    import toolchain.core.device as device

    monkeypatch.setattr(device, "_cuda_count", lambda: 2)  # a 2-GPU machine, as torch would report it
    chosen = resolve_device(spec)
    assert chosen.ultralytics == "0" and chosen.amp and chosen.torch == "cuda:0"
    assert resolve_device("cuda:1").ultralytics == "1"
    with pytest.raises(EdgepruneError, match="has 2"):
        resolve_device("cuda:2")


def test_finetune_on_a_missing_gpu_is_one_sentence(random_yolo, synth_data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "finetune", random_yolo("yolov8n.yaml"),
                           "--data", synth_data, "--device", "cuda:0", "--out", tmp_path / "ft"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--device cuda:0 asks for CUDA" in proc.stderr


LEGACY = Path(__file__).resolve().parents[2] / "assets" / "ultralytics-8.1.0-yolov8n-seg.pt"


@pytest.mark.parametrize("global_pruning", [False, True], ids=["local", "global"])
def test_a_checkpoint_pickled_by_ultralytics_8_1_prunes_at_640_to_a_stock_checkpoint(
        tmp_path, reload_without_edgeprune, global_pruning):
    """Pickled by Ultralytics 8.1.0 itself (``make legacy-checkpoint``): its classes lack today's attributes."""
    from toolchain.models.contract import contract_shapes
    from toolchain.models.pruning import PruneConfig
    from toolchain.models.prune_job import prune_file

    assert LEGACY.exists(), f"{LEGACY} is missing; run `make legacy-checkpoint` to reproduce it"
    digest = sha256_of(LEGACY)
    loaded = load_model(LEGACY)
    assert (loaded.task, loaded.nc, loaded.train_imgsz) == ("segment", 3, 640)
    out = tmp_path / "pruned.pt"
    report = prune_file(str(LEGACY), str(out), PruneConfig(ratio=0.5, global_pruning=global_pruning,
                                                           imgsz=loaded.train_imgsz))
    assert report.after.macs < 0.35 * report.before.macs
    reloaded = reload_without_edgeprune(out, 640)
    assert reloaded["task"] == "segment" and reloaded["results"] == 1
    expected = [list(s) for s in contract_shapes(loaded.model, torch.zeros(1, 3, 640, 640))]
    assert reloaded["shapes"] == expected  # 4 + 3 classes + 32 mask coefficients, and 32 prototypes
    assert sha256_of(LEGACY) == digest


def test_a_yaml_that_disagrees_with_its_head_is_read_by_the_head(random_yolo, reload_without_edgeprune, tmp_path):
    """Ultralytics' released pose checkpoints keep the detector's 80-class yaml with a 1-class head; stock
    Ultralytics runs them by their head, and so does edgeprune (with a note), prune included."""
    from toolchain.models.checkpoint import save_model
    from toolchain.models.prune_job import prune_file
    from toolchain.models.pruning import PruneConfig

    loaded = load_model(random_yolo("yolov8n-pose.yaml", nc=1))
    model = loaded.model
    model.yaml = {**model.yaml, "nc": 80}
    path = tmp_path / "released-pose.pt"
    save_model(loaded, model, path)
    again = load_model(path)
    assert again.nc == 1 and again.task == "pose"
    assert any("yaml says nc=80" in note and "head predicts nc=1" in note for note in again.notes)
    report = prune_file(str(path), str(tmp_path / "p.pt"), PruneConfig(ratio=0.3, imgsz=128))
    assert any("nc=80" in note for note in report.notes) and report.after.params < report.before.params
    assert reload_without_edgeprune(tmp_path / "p.pt", 128)["results"] == 1


def test_eval_of_an_output_it_cannot_decode_exits_2_and_never_scores_0(micro_data, tmp_path):
    """A classifier's (batch, classes) output on a detection set: refused in one sentence, not mAP 0."""
    from click.testing import CliRunner

    from toolchain.cli.main import cli

    classifier = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                     torch.nn.Linear(8, 3)).eval()
    path = tmp_path / "classifier.pt"
    torch.save(classifier, path)
    result = CliRunner().invoke(cli, ["eval", str(path), "--data", str(micro_data), "--imgsz", "64"])
    assert result.exit_code == 2, result.output[-2000:]
    assert "not detections" in result.output and "(1, 3)" in result.output and "Traceback" not in result.output


def test_a_checkpoint_that_only_names_models_yolo_is_not_taken_for_a_repository_one(baseline_pt, tmp_path):
    """Ultralytics stores the git commit message of the training folder: a string, not a pickled class."""
    from toolchain.models.sources import source_for
    from toolchain.models.sources.base import is_repo_checkpoint

    ckpt = torch.load(baseline_pt, map_location="cpu", weights_only=False)
    ckpt["git"] = {"message": "found by their pickled models.yolo classes (cmodels.yolo\nModel\n)"}
    path = tmp_path / "mentions.pt"
    torch.save(ckpt, path)
    assert not is_repo_checkpoint(path) and source_for(path).name == "pytorch"
