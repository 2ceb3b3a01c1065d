"""``deploy --precision auto``: every candidate built, measured and recorded; the fastest within --max-drop wins."""

from __future__ import annotations

import json

import pytest

from targets.base import ExportConfig
from toolchain.pipelines.deploy import deploy
from toolchain.pipelines.deploy import deploy_auto
from toolchain.pipelines.precision_choice import CANDIDATES_DIR, choose
from toolchain.core.errors import EdgepruneError


def _candidate(precision, fps, drop, rel=1e-6):
    return {"precision": precision, "fps": fps, "map50_95_drop": drop, "max_rel_diff": rel}


def test_the_fastest_within_the_drop_wins_and_the_reason_names_the_losers():
    fast_but_bad = [_candidate("fp32", 40, 0.0), _candidate("fp16", 44, 0.001), _candidate("int8", 70, 0.03)]
    winner, why = choose(fast_but_bad, max_drop=0.01)
    assert winner["precision"] == "fp16" and "int8 lost 0.0300 mAP50-95 > --max-drop 0.01" in why
    winner, _ = choose(fast_but_bad, max_drop=0.05)
    assert winner["precision"] == "int8"
    slow_int8 = [_candidate("fp32", 50, 0.0), _candidate("fp16", 49, 0.0), _candidate("int8", 30, 0.002)]
    assert choose(slow_int8, 0.01)[0]["precision"] == "fp32"  # INT8 is not assumed faster: it is measured
    no_data = [_candidate("fp32", 40, None), _candidate("fp16", 60, None, rel=0.5)]
    winner, why = choose(no_data, 0.01)
    assert winner["precision"] == "fp32" and "fp16 has no mAP measurement and its outputs differ by 0.5" in why


def test_auto_deploy_records_every_candidate_and_keeps_only_the_winner(baseline_pt, micro_data, tmp_path):
    fps = {"fp32": 10.0, "fp16": 12.0, "int8": 30.0}  # a device where INT8 is fastest

    def fake_measure(target, artifact, device):
        precision = json.loads((tmp_path / "out" / CANDIDATES_DIR / artifact.split(CANDIDATES_DIR + "/")[1]
                                .split("/")[0] / "deploy.json").read_text())["precision"]
        return {"fps": fps[precision]}

    cfg = ExportConfig(precision="auto", data=str(micro_data), calib_images=8, max_drop=0.05)
    result = deploy_auto("onnx", str(baseline_pt), tmp_path / "out", cfg, measure=fake_measure)
    record = json.loads((tmp_path / "out" / "deploy.json").read_text())
    choice = record["precision_choice"]
    assert [c["precision"] for c in choice["candidates"]] == ["fp32", "fp16", "int8"]
    assert [c["fps"] for c in choice["candidates"]] == [10.0, 12.0, 30.0]
    assert all(c["map50_95_drop"] is not None for c in choice["candidates"])  # each measured by running it
    assert choice["winner"] == record["precision"] == "int8" and "fastest" in choice["why"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["deploy.json", "metadata.yaml",
                                                                     "yolov8n-synth.onnx"]
    assert result.artifact.endswith("yolov8n-synth.onnx")

    fps["int8"] = 50.0  # fastest again, but --no-eval: nothing says INT8 kept its accuracy, so it cannot win
    again = deploy_auto("onnx", str(baseline_pt), tmp_path / "out", cfg, measure=fake_measure, evaluate=False)
    assert [c["map50_95_drop"] for c in again.record["precision_choice"]["candidates"]] == [None] * 3
    assert again.record["precision_choice"]["winner"] == "fp16" and again.record["precision"] == "fp16"
    assert "int8 has no mAP measurement" in again.record["precision_choice"]["why"]


def test_auto_is_the_cli_default_and_a_board_target_takes_its_one_precision(baseline_pt, tmp_path):
    from click.testing import CliRunner

    from toolchain.cli.main import cli

    help_text = CliRunner().invoke(cli, ["deploy", "openvino", "--help"]).output
    assert "[default: auto]" in help_text and "--max-drop" in help_text
    with pytest.raises(EdgepruneError, match="INT8 needs calibration images"):  # auto -> int8 (its one), then the checks
        deploy("vitis", str(baseline_pt), tmp_path / "v", ExportConfig(precision="auto"))
