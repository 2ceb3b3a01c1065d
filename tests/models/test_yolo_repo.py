"""YOLOv5-repository checkpoints, made here the way that repository's train.py saves them.

The packaged YOLOv5 repository (PyPI ``yolov5``, installed by ``make yolov5-repo`` into
``.cache/yolov5-pkg``) builds the model offline from its shipped yaml; the checkpoint pickles its
``models.yolo`` classes and names a data file that does not exist, as users' checkpoints do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from toolchain.cli.main import cli
from toolchain.core.errors import EdgepruneError
from toolchain.core.prepost import nms, predictions

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / ".cache" / "yolov5-pkg"
ROOT = PKG / "yolov5"
IMGSZ = 256  # what the checkpoint's opt says; edgeprune's own default would be 640

pytestmark = pytest.mark.skipif(not (ROOT / "models" / "yolo.py").is_file(),
                                reason="the packaged YOLOv5 repository is missing: run `make yolov5-repo`")

# Run where edgeprune cannot be imported: the repository's own attempt_load reads the file and runs it.
_ATTEMPT_LOAD = r"""
import json, os, sys
for name in ("toolchain", "targets", "cfg_codegen", "edgeprune"):
    sys.modules[name] = None
sys.path[:0] = [sys.argv[3], sys.argv[4]]
import torch
from models.experimental import attempt_load
model = attempt_load(sys.argv[1], device="cpu")
size = int(sys.argv[2])
with torch.no_grad():
    rows = model(torch.zeros(1, 3, size, size))[0]
print(json.dumps({"rows": list(rows.shape), "params": sum(p.numel() for p in model.parameters())}))
"""


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(PKG)]), "EDGEPRUNE_REPO": str(ROOT),
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}


def _attempt_load(path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", _ATTEMPT_LOAD, str(path), str(IMGSZ), str(ROOT), str(PKG)],
                          capture_output=True, text=True, cwd="/", env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def repo_ckpt(tmp_path_factory) -> Path:
    """yolov5n, 3 classes, saved as train.py saves it (fp16 ``model``, ``ema`` None, ``opt`` with imgsz 256).

    The objectness and class biases are raised so that the untrained model gives boxes above the deployment
    threshold: the decode tests then compare real detections, not empty lists.
    """
    if str(PKG) not in sys.path:
        sys.path.append(str(PKG))
    from toolchain.models.sources.yolo_repo import use_repository

    use_repository(ROOT)
    from models.yolo import Model

    torch.manual_seed(0)
    model = Model(str(ROOT / "models" / "yolov5n.yaml"), nc=3).eval()
    with torch.no_grad():
        for conv in model.model[-1].m:
            conv.bias.view(model.model[-1].na, -1)[:, 4] += 8.0  # objectness about 0.9
            conv.bias.view(model.model[-1].na, -1)[:, 5:] += 1.5  # class probabilities about 0.5
    path = tmp_path_factory.mktemp("repo") / "yolov5n-tea.pt"
    torch.save({"epoch": 99, "model": model.half(), "ema": None, "optimizer": None,
                "opt": {"imgsz": IMGSZ, "data": "/nowhere/tea-buds.yaml", "weights": "/nowhere/yolov5n.pt"}}, path)
    return path


def _invoke(*args):
    return CliRunner().invoke(cli, ["--repo", str(ROOT), *args])


def test_without_the_repository_the_refusal_names_it_and_the_flag(repo_ckpt):
    env = {k: v for k, v in _env().items() if k not in ("EDGEPRUNE_REPO",)}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "prune", str(repo_ckpt), "--ratio", "0.5",
                           "--out", str(repo_ckpt.with_name("x.pt"))], capture_output=True, text=True, env=env,
                          cwd="/")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "YOLOv5/YOLOv7 repository checkpoint" in proc.stderr and "--repo" in proc.stderr
    assert "Traceback" not in proc.stderr and not repo_ckpt.with_name("x.pt").exists()


@pytest.fixture(scope="module")
def pruned(repo_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned") / "yolov5n-p50.pt"
    started = time.perf_counter()
    result = _invoke("prune", str(repo_ckpt), "--ratio", "0.5", "--out", str(out), "--json")
    seconds = time.perf_counter() - started
    assert result.exit_code == 0, result.output[-3000:]
    return out, json.loads(result.output[result.output.index("{"):]), seconds


def test_prune_takes_the_size_from_opt_and_the_repository_loads_the_result(repo_ckpt, pruned):
    out, report, seconds = pruned
    assert report["input_shape"] == [1, 3, IMGSZ, IMGSZ]  # from the checkpoint's opt, not 640
    assert report["after"]["macs"] < 0.45 * report["before"]["macs"]
    assert seconds < 60, seconds  # was 495 s, traced through the head's decode
    before, after = _attempt_load(repo_ckpt), _attempt_load(out)
    assert after["rows"] == before["rows"] == [1, 3 * (32 * 32 + 16 * 16 + 8 * 8), 8]
    assert after["params"] < 0.5 * before["params"]
    saved = torch.load(out, map_location="cpu", weights_only=False)
    assert saved["opt"]["imgsz"] == IMGSZ and saved["ema"] is None and saved["model"].model[-1].nc == 3


def test_head_ratio_is_refused_in_one_sentence_for_a_repository_checkpoint(repo_ckpt, tmp_path):
    """The repositories' Detect has only its prediction convs: a head share cannot apply, and nothing is written."""
    result = _invoke("prune", str(repo_ckpt), "--ratio", "0.5", "--head-ratio", "0.2", "--out", str(tmp_path / "p.pt"))
    assert result.exit_code == 2 and "--head-ratio" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_sweep_refuses_a_head_ratio_before_measuring_anything(repo_ckpt, micro_data, tmp_path):
    from toolchain.pipelines import sweep as sweep_mod

    cfg = sweep_mod.SweepConfig(data=str(micro_data), ratios=(0.5,), head_ratio=0.2, target="onnx")
    with pytest.raises(EdgepruneError, match=r"--head-ratio does not apply to .*repository checkpoint"):
        sweep_mod.sweep(str(repo_ckpt), tmp_path, cfg)
    assert sweep_mod.read_points(tmp_path) == []


def test_eval_decodes_rows_with_objectness_as_the_repository_nms_does(repo_ckpt, micro_data):
    """edgeprune's decode + NMS on the model's rows gives the boxes the repository's own NMS gives.

    An untrained model's scores are its biases (a handful of distinct values), and NMS among equal
    scores may keep either box; the rows' objectness and class columns are therefore redrawn at random
    (seeded), the boxes are the model's own.
    """
    import cv2
    from yolov5.utils.general import non_max_suppression

    from toolchain.core.prepost import letterbox, to_input
    from toolchain.models.sources.base import SourceRequest
    from toolchain.models.sources.yolo_repo import YoloRepoSource

    source = YoloRepoSource().prepare(repo_ckpt, SourceRequest(None))
    assert source.input_hw == (IMGSZ, IMGSZ) and source.head["format"] == "yolo-rows"
    image = sorted((micro_data.parent / "images" / "val").iterdir())[0]
    x = torch.from_numpy(to_input([letterbox(cv2.imread(str(image)), IMGSZ)[0]]))
    with torch.no_grad():
        rows = source.module(x)
    rows[..., 4:] = torch.rand(rows[..., 4:].shape, generator=torch.Generator().manual_seed(0))
    ours = nms(predictions([rows.numpy()], source.head, (IMGSZ, IMGSZ))[0].T, conf=0.25, iou=0.45)
    theirs = non_max_suppression(rows, conf_thres=0.25, iou_thres=0.45)[0].numpy()
    assert len(theirs) > 5, "the test model must detect something"
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours[np.argsort(-ours[:, 4])], theirs[np.argsort(-theirs[:, 4])], rtol=1e-4,
                               atol=1e-4 * IMGSZ)

    result = _invoke("eval", str(repo_ckpt), "--data", str(micro_data), "--json")
    assert result.exit_code == 0, result.output[-3000:]
    report = json.loads(result.output[result.output.index("{"):])
    assert report["imgsz"] == IMGSZ and 0.0 <= report["map50_95"] <= report["map50"] <= 1.0


def test_label_free_finetune_recovers_toward_the_unpruned_model_in_its_own_format(repo_ckpt, pruned, micro_data,
                                                                                 tmp_path):
    out, _report, _ = pruned
    images = micro_data.parent / "images" / "train"
    result = _invoke("finetune", str(out), "--images", str(images), "--epochs", "2", "--batch", "4",
                     "--out", str(tmp_path / "ft"), "--json")
    assert result.exit_code == 0, result.output[-3000:]
    record = json.loads(result.output[result.output.index("{"):])
    assert record["teacher"] == str(repo_ckpt.resolve())  # the unpruned source the prune recorded
    losses = [float(line.split(",")[1]) for line in (tmp_path / "ft" / "results.csv").read_text().splitlines()[1:]]
    assert len(losses) == 2 and losses[1] < losses[0], losses
    assert _attempt_load(Path(record["weights"]))["rows"][2] == 8


def test_labelled_finetune_trains_with_the_repository_loss_and_keeps_the_format(pruned, micro_data, tmp_path):
    out, report, _ = pruned
    result = _invoke("finetune", str(out), "--data", str(micro_data), "--epochs", "2", "--batch", "4",
                     "--out", str(tmp_path / "ft"), "--json")
    assert result.exit_code == 0, result.output[-3000:]
    record = json.loads(result.output[result.output.index("{"):])
    assert record["map50_95"] is not None and record["params"] == report["after"]["params"]  # widths kept
    assert any("utils.loss.ComputeLoss" in note for note in record["notes"])
    losses = [float(line.split(",")[1]) for line in (tmp_path / "ft" / "results.csv").read_text().splitlines()[1:]]
    assert len(losses) == 2 and all(np.isfinite(losses)), losses
    tuned = torch.load(record["weights"], map_location="cpu", weights_only=False)["model"].float()
    before = torch.load(out, map_location="cpu", weights_only=False)["model"].float()
    assert not torch.equal(tuned.model[0].conv.weight, before.model[0].conv.weight)  # it trained
    assert _attempt_load(Path(record["weights"]))["rows"][2] == 8
    refused = _invoke("finetune", str(out), "--data", str(micro_data), "--distill", str(out), "--out",
                      str(tmp_path / "x"))
    assert refused.exit_code == 2 and "--images" in refused.output and not (tmp_path / "x").exists()


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_deploy_keeps_the_rows_within_1e4_relative(pruned, target, tmp_path):
    from targets.registry import get_target

    out, _report, _ = pruned
    result = _invoke("deploy", target, str(out), "--precision", "fp32", "--out", str(tmp_path / target),
                     "--json")
    assert result.exit_code == 0, result.output[-3000:]
    record = json.loads((tmp_path / target / "deploy.json").read_text())
    assert record["source"]["head"]["format"] == "yolo-rows" and record["imgsz"] == IMGSZ
    from toolchain.models.sources.base import SourceRequest
    from toolchain.models.sources.yolo_repo import YoloRepoSource

    source = YoloRepoSource().prepare(out, SourceRequest(None))
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        expected = source.module(x).numpy()
    runner = get_target(target).open(str(tmp_path / target / record["artifact"]), precision="f32")
    got = np.asarray(runner(x.numpy()))
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_a_sweep_prunes_deploys_and_measures_repository_points(repo_ckpt, micro_data, tmp_path):
    """The sweep's point pipeline takes the repository source like any other (unpruned point + one prune)."""
    import edgeprune

    result = edgeprune.sweep(str(repo_ckpt), str(micro_data), str(tmp_path / "sweep"), ratios=(0.5,), target="onnx",
                             max_drop=1.0, bench_iterations=5)
    ratios = sorted(p.ratio for p in result.points)
    assert ratios == [0.0, 0.5]
    unpruned, pruned = sorted(result.points, key=lambda p: p.ratio)
    assert pruned.macs < 0.5 * unpruned.macs and pruned.fps > 0 and unpruned.fps > 0
    assert torch.load(pruned.model, map_location="cpu", weights_only=False)["opt"]["imgsz"] == IMGSZ  # its format


def test_the_dpu_graph_and_the_boards_decode_give_the_repositorys_rows(repo_ckpt):
    """Deploy for the KV260 cuts the model at its prediction convs; the board's decode must give its rows."""
    from repo_testlib import dpu_maps_vs_rows

    rows, decoded = dpu_maps_vs_rows(repo_ckpt, IMGSZ)
    assert decoded.shape == rows.shape and rows[:, 4:].max() > 0.3  # real detections, not all-zero scores
    assert np.abs(decoded - rows).max() <= 1e-4 * np.abs(rows).max()


def test_vitis_dry_run_writes_a_workspace_for_a_repository_checkpoint(pruned, micro_data, tmp_path):
    out, _report, _ = pruned
    run = _invoke("deploy", "vitis", str(out), "--out", str(tmp_path / "kv260"), "--data", str(micro_data),
                  "--calib-images", "3", "--eval-images", "2", "--dry-run")
    assert run.exit_code == 0, run.output[-3000:]
    config = json.loads((tmp_path / "kv260" / "workspace" / "config.json").read_text())
    assert config["imgsz"] == [IMGSZ, IMGSZ] and config["head"]["format"] == "darknet"
    heads = config["head"]["heads"]
    assert [h["stride"] for h in heads] == [[8, 8], [16, 16], [32, 32]]
    assert heads[0]["anchors"] == [[10, 13], [16, 30], [33, 23]]  # yolov5n.yaml's P3 anchors, in pixels
    assert all(h["new_coords"] and h["host_logistic"] and h["scale_x_y"] == 2.0 for h in heads)
    graph = json.loads((tmp_path / "kv260" / "workspace" / "model" / "graph.json").read_text())
    assert "sigmoid" not in {node["op"] for node in graph["nodes"]}  # the decode stays on the board


def test_dpu_rewrite_fits_the_dpu_in_the_repositorys_format(pruned, tmp_path):
    """YOLOv5's SiLU has no DPU implementation: preflight says so, dpu-rewrite fixes it, the repository reads it."""
    out, _report, _ = pruned
    before = _invoke("preflight", str(out), "--json")
    assert before.exit_code == 0, before.output[-3000:]
    before = json.loads(before.output[before.output.index("{"):])
    assert before["expected_dpu_subgraphs"] > 1 and "prediction convs" in before["graph"]
    assert "silu" in {r["op"] for r in before["rows"] if r["device"] == "CPU"}
    assert any("objectness" in step for step in before["host_postprocess"])

    rewritten = tmp_path / "dpu.pt"
    run = _invoke("dpu-rewrite", str(out), "--out", str(rewritten), "--json")
    assert run.exit_code == 0, run.output[-3000:]
    report = json.loads(run.output[run.output.index("{"):])
    assert report["replaced"].get("SiLU", 0) > 40 and report["changed_function"]
    after_run = _invoke("preflight", str(rewritten), "--json")
    after = json.loads(after_run.output[after_run.output.index("{"):])
    assert after["expected_dpu_subgraphs"] == 1 and not [r for r in after["rows"] if r["device"] == "CPU"]
    loaded = _attempt_load(rewritten)  # the repository's own loader, edgeprune not importable
    assert loaded["rows"][-1] == 5 + 3
