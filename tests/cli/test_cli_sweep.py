"""The new commands are registered, documented, and reject bad input as usage errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from toolchain.cli.main import cli


@pytest.mark.parametrize("command, words", [("sparsify", "--s"), ("sweep", "--refine"), ("report", "RUN_DIR")])
def test_help(command, words):
    res = CliRunner().invoke(cli, [command, "--help"])
    assert res.exit_code == 0 and words in res.output


def test_prune_needs_exactly_one_of_ratio_and_layers(baseline_pt, tmp_path):
    for extra in ([], ["--ratio", "0.3", "--layers", "2"]):
        res = CliRunner().invoke(cli, ["prune", str(baseline_pt), "--out", str(tmp_path / "x.pt"), *extra])
        assert res.exit_code == 2 and "exactly one of --ratio" in res.output


def test_report_without_sweep_is_a_one_line_error(tmp_path):
    res = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "has no sweep.json" in res.output
