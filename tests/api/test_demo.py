"""The demo is ``optimize`` on the committed baseline and the synthetic set, then the 4-stream splice.

The recipe itself is tested end to end in ``test_optimize.py``; here: what the demo hands it.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import edgeprune
from edgeprune import demo as demo_module


def _compared(fp32: float, int8: float) -> dict:
    """optimize's compare step as it records it: Ultralytics' base, then the deployed IRs, ratio to the base."""
    return {"rows": [{"artifact": "u/fp16", "is_reference": True, "mode": "inference", "ratio_to_base": 1.0},
                     {"artifact": "a/fp32", "is_reference": False, "mode": "inference", "ratio_to_base": fp32},
                     {"artifact": "a/int8", "is_reference": False, "mode": "inference", "ratio_to_base": int8}]}


@pytest.mark.parametrize("budget, fast, compare, spliced", [
    (None, False, _compared(1.8, 1.3), "a/fp32"),  # an AMX Xeon: the FP32 IR, run in bf16, is the faster
    (None, True, _compared(2.1, 2.3), "a/int8"),  # an AVX-512 EPYC: INT8
    (95, False, None, "a/int8"),  # no comparison: the INT8 IR
])
def test_demo_optimizes_the_baseline_and_splices_the_faster_ir(monkeypatch, tmp_path, budget, fast, compare, spliced):
    calls = {}

    def fake_optimize(model, data, out, **options):
        calls["optimize"] = (model, data, out, options)
        deploy = {"artifacts": [{"precision": "fp32", "artifact": "a/fp32"},
                                {"precision": "int8", "artifact": "a/int8"}]}
        return SimpleNamespace(steps={"finetune": {"weights": "ft/best.pt"}, "deploy": deploy, "compare": compare},
                               table=[], to_json=lambda: {})

    def fake_deploy(model, target, out, **options):
        calls["deploy"] = (model, target, out, options)
        return SimpleNamespace(artifact=out)

    def fake_bench(artifact, **options):
        calls["bench"] = (artifact, options)
        return []

    monkeypatch.setattr(edgeprune, "optimize", fake_optimize)
    monkeypatch.setattr(edgeprune, "deploy", fake_deploy)
    monkeypatch.setattr(edgeprune, "bench", fake_bench)
    (tmp_path / "run" / "data").mkdir(parents=True)
    (tmp_path / "run" / "data" / "data.yaml").write_text("nc: 3\n")
    result = demo_module.run_demo(tmp_path / "run", fast=fast, budget=budget, log=lambda _msg: None)

    model, data, out, options = calls["optimize"]
    assert model == str(tmp_path / "run" / "baseline.pt")
    assert (tmp_path / "run" / "baseline.pt").read_bytes() == demo_module.REPO_BASELINE.read_bytes()
    assert data == str(tmp_path / "run" / "data" / "data.yaml") and out == str(tmp_path / "run" / "optimize")
    assert options["ratio"] == demo_module.DEMO_RATIO
    expected = budget or (demo_module.FAST_BUDGET if fast else demo_module.DEMO_BUDGET)
    assert options["budget_epochs"] == expected
    # the splice runs the fine-tuned model deployed dynamic (it runs at 832 and at 416), in the fastest precision
    weights, target, folder, deployed = calls["deploy"]
    assert (weights, target, folder) == ("ft/best.pt", "openvino", str(tmp_path / "run" / "splice"))
    assert deployed["dynamic"] and deployed["precision"] == spliced[2:]
    assert deployed["data"] == data
    artifact, bench = calls["bench"]
    assert artifact == folder and bench["streams"] == 4 and bench["splice"] == 832
    assert result.spliced == {"artifact": folder, "precision": spliced[2:]}


def test_a_rerun_reuses_the_splice_artifact_an_earlier_demo_deployed(monkeypatch, tmp_path):
    folder = tmp_path / "splice"
    folder.mkdir()
    (folder / "deploy.json").write_text("{}")
    monkeypatch.setattr(edgeprune, "deploy", lambda *a, **k: pytest.fail("deployed again"))
    said = []
    got = demo_module.splice_artifact(SimpleNamespace(steps={}), "int8", "d.yaml", folder, said.append)
    assert got == str(folder) and "earlier run" in said[0]
