"""The demo runs the sparsity-first recipe of issue 13, each step feeding the next one's input."""

from __future__ import annotations

import pytest

from toolchain import demo as demo_module


class _StopAtDeploy(Exception):
    pass


def _record_steps(monkeypatch) -> list:
    """Replace the subprocess runner: record each step, stop before the first deploy (the slow part)."""
    ran = []

    def fake_run_step(step, log):
        if step.name.startswith("deploy"):
            raise _StopAtDeploy
        ran.append(step)
        return {"before": {"params": 2, "macs": 2}, "after": {"params": 1, "macs": 1}}

    monkeypatch.setattr(demo_module, "_run_step", fake_run_step)
    return ran


@pytest.mark.parametrize("fast", [False, True])
def test_demo_prunes_the_sparsified_model_by_gamma_and_finetunes_it_distilled(monkeypatch, tmp_path, fast):
    ran = _record_steps(monkeypatch)
    with pytest.raises(_StopAtDeploy):
        demo_module.run_demo(tmp_path / "run", fast=fast, log=lambda _msg: None)
    steps = {step.name: step.args for step in ran}
    assert list(steps) == ["data", "sparsify", "prune", "finetune"]

    def value(args, option):
        return args[args.index(option) + 1]

    sparsify, prune, finetune = steps["sparsify"], steps["prune"], steps["finetune"]
    assert sparsify[1] == str(tmp_path / "run" / "baseline.pt")
    assert value(sparsify, "--epochs") == ("2" if fast else str(demo_module.SPARSIFY_EPOCHS))
    # prune takes sparsify's last (sparsest) epoch and removes the channels whose gamma it drove down
    assert prune[1] == str(tmp_path / "run" / "sparse" / "weights" / "last.pt")
    assert value(prune, "--method") == "bn"
    assert float(value(prune, "--ratio")) == demo_module.DEMO_RATIO
    assert finetune[1] == value(prune, "--out")
    assert value(finetune, "--epochs") == ("3" if fast else str(demo_module.FINETUNE_EPOCHS))
    assert "--no-distill" not in finetune  # the teacher is the sparsified model prune recorded
