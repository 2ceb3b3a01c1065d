"""Speedups are divided by the fastest Ultralytics export of the unpruned model, never by a forced-f32 row."""

from __future__ import annotations

import dataclasses

import pytest

import toolchain.pipelines.bench as bench_run
from targets.bench import BenchConfig
from targets.ultralytics_exports import ReferenceExport
from toolchain.pipelines.optimize import comparison_table


@pytest.fixture
def fake_speeds(monkeypatch, deploy_ir):
    """compare() with measurements faked per artifact path (the runners are real, the FPS chosen)."""
    real = bench_run.measure_inference
    speeds = {}

    def fake(runner, artifact, cfg):
        result = real(runner, artifact, dataclasses.replace(cfg, iterations=2, duration=None, warmup=0))
        return dataclasses.replace(result, throughput_fps=speeds[artifact])

    monkeypatch.setattr(bench_run, "measure_inference", fake)
    return speeds


def test_base_is_the_fastest_ultralytics_export_even_when_an_artifact_is_faster(fake_speeds, deploy_ir, deploy_onnx):
    refs = [ReferenceExport("Ultralytics openvino FP32", "openvino", "fp32", deploy_ir),
            ReferenceExport("Ultralytics openvino INT8", "openvino", "int8", deploy_ir + "/")]
    fake_speeds.update({deploy_ir: 40.0, deploy_ir + "/": 60.0, deploy_onnx: 90.0})
    result = bench_run.compare([deploy_onnx], BenchConfig(iterations=2, duration=None), references=refs)
    assert result.base_label == "Ultralytics openvino INT8"
    assert [round(result.ratio(i), 3) for i in range(3)] == [0.667, 1.0, 1.5]

    # the optimize (and demo) table built from that comparison marks the same base
    steps = {"compare": result.to_json(), "prune": {"after": {"macs": 50}},
             "deploy": {"artifacts": [{"precision": "fp32", "artifact": deploy_onnx,
                                       "accuracy": {"artifact": {"map50_95": 0.80, "map50": 0.9}}}]}}
    rows = comparison_table(steps, baseline_map=0.81)
    assert [r["model"] for r in rows if r["is_base"]] == ["Ultralytics openvino INT8"]
    assert [r["speedup"] for r in rows if r["is_base"]] == [1.0]
    ours = next(r for r in rows if not r["is_reference"])
    assert ours["model"] == "pruned FP32" and ours["speedup"] == 1.5 and ours["drop_points"] == pytest.approx(1.0)


def test_without_references_the_first_artifact_is_the_base(fake_speeds, deploy_ir, deploy_onnx):
    fake_speeds.update({deploy_ir: 40.0, deploy_onnx: 20.0})
    result = bench_run.compare([deploy_ir, deploy_onnx], BenchConfig(iterations=2, duration=None))
    assert result.base == 0 and result.ratio(1) == 0.5 and not result.to_json()["base_is_ultralytics_export"]
