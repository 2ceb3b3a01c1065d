"""The demo is ``optimize`` on the committed baseline and the synthetic set, then the 4-stream splice.

The recipe itself is tested end to end in ``test_optimize.py``; here: what the demo hands it.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import edgeprune
from edgeprune import demo as demo_module


@pytest.mark.parametrize("budget, fast", [(None, False), (None, True), (95, False)])
def test_demo_optimizes_the_baseline_and_splices_the_int8_ir(monkeypatch, tmp_path, budget, fast):
    calls = {}

    def fake_optimize(model, data, out, **options):
        calls["optimize"] = (model, data, out, options)
        deploy = {"artifacts": [{"precision": "fp32", "artifact": "a/fp32"}, {"precision": "int8", "artifact": "a/int8"}]}
        return SimpleNamespace(steps={"deploy": deploy}, table=[], to_json=lambda: {})

    def fake_bench(artifact, **options):
        calls["bench"] = (artifact, options)
        return []

    monkeypatch.setattr(edgeprune, "optimize", fake_optimize)
    monkeypatch.setattr(edgeprune, "bench", fake_bench)
    (tmp_path / "run" / "data").mkdir(parents=True)
    (tmp_path / "run" / "data" / "data.yaml").write_text("nc: 3\n")
    demo_module.run_demo(tmp_path / "run", fast=fast, budget=budget, log=lambda _msg: None)

    model, data, out, options = calls["optimize"]
    assert model == str(tmp_path / "run" / "baseline.pt")
    assert (tmp_path / "run" / "baseline.pt").read_bytes() == demo_module.REPO_BASELINE.read_bytes()
    assert data == str(tmp_path / "run" / "data" / "data.yaml") and out == str(tmp_path / "run" / "optimize")
    assert options["ratio"] == demo_module.DEMO_RATIO
    expected = budget or (demo_module.FAST_BUDGET if fast else demo_module.DEMO_BUDGET)
    assert options["budget_epochs"] == expected
    artifact, bench = calls["bench"]
    assert artifact == "a/int8" and bench["streams"] == 4 and bench["splice"] == 832
