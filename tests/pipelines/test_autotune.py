"""Autotune: the recommendation rule (fake measurements), file shipping, and a real two-node Ray cluster."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from toolchain.pipelines.autotune import AutotunePoint, pareto, recommend
from toolchain.core.errors import InputFileError
from toolchain.pipelines.shipping import pack_dataset, unpack_dataset

REPO = Path(__file__).resolve().parents[2]


def _point(ratio, target, precision, map50, fps) -> AutotunePoint:
    return AutotunePoint(ratio, target, precision, precision, map50, map50 - 0.2, fps, 1000 / fps, 1, 1, "a", 1, "cpu",
                         2, "k", 1.0, "t")


def test_recommendation_is_the_fastest_point_within_the_drop_of_its_own_targets_fp32():
    points = [
        _point(0.0, "openvino", "fp32", 0.90, 100), _point(0.0, "openvino", "int8", 0.89, 150),
        _point(0.5, "openvino", "fp32", 0.885, 180), _point(0.5, "openvino", "int8", 0.86, 400),  # too inaccurate
        _point(0.0, "onnx", "fp32", 0.80, 60), _point(0.5, "onnx", "int8", 0.79, 190),  # onnx's own reference: 0.80
        _point(0.7, "tflite", "int8", 0.95, 900),  # no unpruned fp32 on its target: never recommended
    ]
    rec = recommend(points, max_drop=0.02)
    assert (rec.point.target, rec.point.ratio, rec.point.precision) == ("onnx", 0.5, "int8")
    assert "drop 0.010 <= 0.02" in rec.reason and "1.27x the fastest unpruned artifact" in rec.reason
    strict = recommend(points, max_drop=0.012)
    assert (strict.point.target, strict.point.ratio, strict.point.precision) == ("onnx", 0.5, "int8")
    tight = recommend(points, max_drop=0.005)
    assert (tight.point.target, tight.point.ratio, tight.point.precision) == ("openvino", 0.0, "fp32")
    assert recommend([_point(0.5, "onnx", "int8", 0.5, 10)], 0.02).point is None
    front = pareto([p for p in points if p.target == "openvino"])
    assert [(p.ratio, p.precision) for p in front] == [(0.5, "int8"), (0.5, "fp32"), (0.0, "int8"), (0.0, "fp32")]
    dominated = _point(0.3, "openvino", "fp16", 0.85, 120)
    assert dominated not in pareto([*points[:4], dominated])


def test_a_shipped_data_set_is_self_contained(small_data, tmp_path):
    blob = pack_dataset(small_data)
    local = unpack_dataset(blob, tmp_path / "worker")
    data = yaml.safe_load(local.read_text())
    assert Path(data["path"]) == local.parent and data["names"] == yaml.safe_load(small_data.read_text())["names"]
    for split in ("train", "val"):
        shipped = sorted(p.name for p in (local.parent / data[split]).iterdir())
        original = sorted(p.name for p in (small_data.parent / "images" / split).iterdir())
        assert shipped == original
    assert (local.parent / "labels" / "val").is_dir()
    outside = tmp_path / "outside.yaml"
    outside.write_text(yaml.safe_dump({"path": str(tmp_path / "worker"), "train": "images/train",
                                       "val": str(small_data.parent / "images" / "val"), "names": ["a", "b", "c"]}))
    with pytest.raises(InputFileError, match="the val split .* lies outside the data set folder"):
        pack_dataset(outside)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args, env) -> subprocess.CompletedProcess:
    ray = Path(sys.executable).with_name("ray")
    return subprocess.run([str(ray), *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.full  # 47 s with a local Ray head and worker; make test-full also runs the sweep's Ray executor
def test_autotune_on_a_real_ray_cluster_ships_files_and_brings_artifacts_back(baseline_pt, micro_data, tmp_path):
    """Head and worker as separate `ray start` processes with their own temp dirs; the driver's run folder
    is never handed to a task: the model and data set travel as bytes, the artifacts come back as bytes."""
    pytest.importorskip("ray")
    short = Path(f"/tmp/ep-ray-{os.getpid()}")  # Ray's socket paths must stay under ~100 characters
    # Ray 2.5x turns token authentication on when ~/.ray/auth_token exists (any earlier ray.init() writes it);
    # the cluster, as a real one should, runs with one token that head, worker and driver all share
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    port = _free_port()
    try:
        head = _ray("start", "--head", f"--port={port}", "--num-cpus=1", f"--temp-dir={short}/head",
                    "--include-dashboard=false", "--disable-usage-stats", env=env)
        assert head.returncode == 0, head.stderr
        worker = _ray("start", f"--address=127.0.0.1:{port}", "--num-cpus=1", f"--temp-dir={short}/worker", env=env)
        assert worker.returncode == 0, worker.stderr
        run_dir = tmp_path / "driver-only" / "run"
        proc = subprocess.run(
            [sys.executable, "-m", "toolchain.cli.main", "autotune", str(baseline_pt), "--data", str(micro_data),
             "--ratios", "0.2,0.4", "--precisions", "fp32,int8", "--targets", "onnx", "--no-references",
             "--bench-iterations", "5", "--calib-images", "8", "--executor", "ray",
             "--ray-address", f"127.0.0.1:{port}", "--out", str(run_dir), "--json"],
            capture_output=True, text=True, env=env, timeout=900)
    finally:
        _ray("stop", "--force", env=env)
        shutil.rmtree(short, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    pruned = [p for p in result["points"] if p["ratio"] > 0]
    assert sorted((p["ratio"], p["precision"]) for p in pruned) == [(0.2, "fp32"), (0.2, "int8"), (0.4, "fp32"),
                                                                    (0.4, "int8")]
    import onnxruntime as ort

    for p in result["points"]:
        artifact = Path(p["artifact"])
        assert run_dir in artifact.parents and artifact.is_file()  # brought back into the driver's run folder
        ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])  # a whole, loadable model
        assert (artifact.parent / "deploy.json").is_file() and (artifact.parent / "bench.jsonl").is_file()
        assert p["node"] != "local" and p["fps"] > 0 and 0 <= p["map50"] <= 1
    assert {p["executed_precision"] for p in pruned} == {"f32", "int8 + f32"}
    lines = (run_dir / "autotune.jsonl").read_text().splitlines()
    assert len(lines) == len(result["points"]) == 6  # the unpruned model at both precisions, then 2 ratios x 2
    from toolchain.pipelines.report import build_report

    report = build_report(run_dir)
    markdown = Path(report.markdown).read_text()
    assert "## onnx" in markdown and result["recommendation"]["reason"] in markdown and len(report.images) == 1
    assert markdown.count("\n| 0.2 |") == 2 and markdown.count("\n| 0.4 |") == 2


def test_an_interrupted_autotune_resumes_from_the_drivers_jsonl(baseline_pt, micro_data, tmp_path):
    """The driver records each finished job at once; a rerun hands the executor only the ratios still missing."""
    from toolchain.pipelines.autotune import AutotuneConfig, autotune
    from toolchain.pipelines.sweep import SweepConfig

    class Stop(Exception):
        pass

    handed: list[list[float]] = []

    def executor(fail_after):
        def run(jobs, done):
            handed.append([job.kwargs["ratio"] for job in jobs])
            for i, job in enumerate(jobs):
                if i == fail_after:
                    raise Stop
                ratio = job.kwargs["ratio"]
                done(job, [{**_point(ratio, t, p, 0.9 - ratio / 10, 100 + 100 * ratio).to_json(), "key": job.kwargs["key"]}
                           for t in ("openvino", "onnx") for p in ("fp32", "int8")], None)
        return run

    config = AutotuneConfig(SweepConfig(data=str(micro_data), ratios=(0.2, 0.4)), ("fp32", "int8"),
                            ("openvino", "onnx"), references=False)
    with pytest.raises(Stop):
        autotune(str(baseline_pt), tmp_path, config, executor=executor(fail_after=2))
    assert len((tmp_path / "autotune.jsonl").read_text().splitlines()) == 8  # ratios 0 and 0.2, 4 artifacts each
    result = autotune(str(baseline_pt), tmp_path, config, executor=executor(fail_after=None))
    assert handed == [[0.0, 0.2, 0.4], [0.4]]
    assert (result.resumed, result.computed, len(result.points)) == (8, 4, 12)
