"""The target registry is the truth: a target registered from anywhere gets the CLI without a CLI edit.

The target defined here is what a new backend module under ``targets/`` would be: a
:class:`Target` subclass decorated with :func:`register_target`. It "exports" the prepared
torch module with ``torch.save`` and runs it with torch, so the shared deploy pipeline really
runs end to end on it (export, verify, deploy.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from targets import registry
from targets.base import ExportConfig, Target, TargetOption
from targets.runner import Runner
from targets.torch_runner import TorchRunner
from toolchain.cli.main import cli
from toolchain.core.errors import EdgepruneError


class PickledRunner(Runner):
    def __init__(self, path: Path):
        module = torch.load(path, weights_only=False)
        self._inner = TorchRunner(module, tuple(module.example_shape))
        self.info = self._inner.info

    def outputs(self, x: np.ndarray) -> list[np.ndarray]:
        return self._inner.outputs(x)


class PickleTarget(Target):
    name = "pickle-test"
    summary = "A test backend: the prepared torch module, pickled."
    precisions = ("fp32",)
    options = (TargetOption("--protocol", "Pickle protocol.", type=int, default=4, min=1),)

    def devices(self):
        return ["cpu"]

    def export(self, source, out_dir: Path, cfg: ExportConfig) -> str:
        path = Path(out_dir) / f"{source.stem}.pkl"
        source.module.example_shape = tuple(source.example.shape)
        torch.save(source.module, path, pickle_protocol=cfg.options["protocol"])
        return str(path)

    def owns(self, artifact: Path) -> bool:
        return Path(artifact).suffix == ".pkl"

    def open(self, artifact, device="cpu", precision="auto", threads=None, hint="latency", requests=None,
             input_hw=None, batch=1):
        return PickledRunner(Path(artifact))


@pytest.fixture
def pickle_target():
    registry.register_target(PickleTarget)
    yield PickleTarget
    registry.TARGETS.unregister(PickleTarget.name)


def test_a_registered_target_gets_a_deploy_command_and_backend_choice(pickle_target, baseline_pt, tmp_path):
    runner = CliRunner()
    assert "pickle-test" in runner.invoke(cli, ["deploy", "--help"]).output
    help_text = runner.invoke(cli, ["deploy", "pickle-test", "--help"]).output
    assert "--protocol" in help_text and "[auto|fp32]" in help_text  # its own option and precisions
    assert "pickle-test" in runner.invoke(cli, ["bench", "run", "--help"]).output
    assert "pickle-test" in runner.invoke(cli, ["sweep", "--help"]).output

    out = tmp_path / "deployed"
    result = runner.invoke(cli, ["deploy", "pickle-test", str(baseline_pt), "--out", str(out), "--protocol", "2",
                                 "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "deploy.json").read_text())
    assert record["target"] == "pickle-test" and record["fidelity"]["max_abs_diff"] == 0.0
    bench = runner.invoke(cli, ["bench", str(out / record["artifact"]), "--backend", "pickle-test", "--iterations", "3",
                                "--warmup", "0", "--json"])
    assert bench.exit_code == 0, bench.output
    assert json.loads(bench.output[bench.output.index("{"):])["backend"] == "torch"


def test_unregistered_names_and_precisions_are_refused(pickle_target, baseline_pt, tmp_path):
    from toolchain.pipelines.deploy import deploy

    with pytest.raises(EdgepruneError, match=r"target pickle-test builds fp32; got --precision 'int8'"):
        deploy("pickle-test", str(baseline_pt), tmp_path / "x", ExportConfig(precision="int8"))
    with pytest.raises(EdgepruneError, match=r"target torch builds nothing \(it is a reference runner\)"):
        deploy("torch", str(baseline_pt), tmp_path / "y", ExportConfig())
    assert "torch" not in registry.deploy_targets() and "vitis" not in registry.host_targets()
