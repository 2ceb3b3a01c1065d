"""The README's Python API example runs as written, and the API is what it says it is."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- api-example", 1)[1]
    return re.search(r"```python\n(.*?)```", block, re.S).group(1)


def test_the_readme_api_example_runs(synth_data, tmp_path, monkeypatch):
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "yolov8n-synth.pt").symlink_to(REPO / "assets" / "yolov8n-synth.pt")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "synth-default").symlink_to(synth_data.parent)
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(readme_example(), "README.md", "exec"), {})  # noqa: S102 - the documented example itself
    lines = printed.getvalue().splitlines()
    kept = float(re.search(r"MACs kept: ([\d.]+)", lines[0]).group(1))
    assert 0.3 < kept < 0.8  # ratio 0.3 on channels removes roughly half the MACs
    fidelity, map50_95 = re.search(r"fidelity ([\d.e+-]+), mAP50-95 ([\d.]+)", lines[1]).groups()
    assert float(fidelity) < 1e-3 and 0.0 <= float(map50_95) <= 1.0
    assert float(lines[2].split()[0]) > 0 and "executed f32" in lines[2]
    assert (tmp_path / "pruned.pt").is_file() and (tmp_path / "pruned-onnx" / "deploy.json").is_file()


def test_the_api_lists_what_it_exports_and_documents_it():
    import edgeprune

    assert set(edgeprune.__all__) == {"EdgepruneError", "Stream", "autotune", "bench", "board_bench", "cfg2py",
                                      "cfg_prune", "compare", "deploy", "dpu_rewrite", "evaluate", "finetune", "load",
                                      "optimize", "preflight", "prune", "report", "sparsify", "stream", "sweep",
                                      "synth", "train", "use_repository"}
    for name in edgeprune.__all__:
        assert getattr(edgeprune, name).__doc__, name
    assert os.environ.get("YOLO_OFFLINE") == "1"


def test_api_errors_are_edgeprune_errors(tmp_path):
    import pytest

    import edgeprune

    with pytest.raises(edgeprune.EdgepruneError, match="exactly one of --ratio .* and --layers"):
        edgeprune.prune(str(REPO / "assets" / "yolov8n-synth.pt"), str(tmp_path / "x.pt"))


class _Called(Exception):
    pass


def _cli_calls(monkeypatch, name: str, argv: list[str]) -> tuple[tuple, dict]:
    """Run the CLI with ``edgeprune.<name>`` replaced by a recorder; return what the command passed it."""
    from click.testing import CliRunner

    import edgeprune
    from toolchain.cli.main import cli

    seen = {}

    def record(*args, **kwargs):
        seen["call"] = (args, kwargs)
        raise _Called

    monkeypatch.setattr(edgeprune, name, record)
    result = CliRunner().invoke(cli, argv)
    assert isinstance(result.exception, _Called), (name, result.output, result.exception)
    return seen["call"]


def test_every_command_goes_through_the_api(monkeypatch, synth_data, tmp_path):
    """The CLI parses and prints; the work is the API function of the same name, given the options as typed."""
    pt, data = str(REPO / "assets" / "yolov8n-synth.pt"), str(synth_data)
    args, kw = _cli_calls(monkeypatch, "prune", ["prune", pt, "--ratio", "0.4", "--round-to", "16", "--out",
                                                 str(tmp_path / "p.pt")])
    assert args[:3] == (pt, str(tmp_path / "p.pt"), 0.4) and kw["round_to"] == 16 and kw["imgsz"] == 256
    args, kw = _cli_calls(monkeypatch, "deploy", ["deploy", "onnx", pt, "--out", str(tmp_path / "o"),
                                                  "--precision", "fp16", "--dynamic-shape"])
    assert args == (pt, "onnx", str(tmp_path / "o")) and kw["precision"] == "fp16" and kw["dynamic"] is True
    args, kw = _cli_calls(monkeypatch, "bench", ["bench", pt, "-b", "4", "-niter", "7", "-hint", "throughput"])
    assert args == (pt,) and (kw["batch"], kw["iterations"], kw["hint"]) == (4, 7, "throughput")
    args, kw = _cli_calls(monkeypatch, "compare", ["bench", "compare", pt, pt, "-nthreads", "1"])
    assert list(args[0]) == [pt, pt] and kw["threads"] == 1
    args, kw = _cli_calls(monkeypatch, "evaluate", ["eval", pt, "--data", data, "--split", "val"])
    assert args == (pt, data) and kw["split"] == "val"
    args, kw = _cli_calls(monkeypatch, "finetune", ["finetune", pt, "--data", data, "--out", str(tmp_path / "f"),
                                                    "--epochs", "3", "--no-distill"])
    assert args == (pt, data, str(tmp_path / "f")) and kw["epochs"] == 3 and kw["teacher"] is None
    args, kw = _cli_calls(monkeypatch, "sweep", ["sweep", pt, "--data", data, "--ratios", "0.2,0.4", "--out",
                                                 str(tmp_path / "s")])
    assert tuple(kw["ratios"]) == (0.2, 0.4) and kw["executor"] == "local"
    args, kw = _cli_calls(monkeypatch, "autotune", ["autotune", pt, "--data", data, "--precisions", "int8,fp32",
                                                    "--targets", "onnx", "--out", str(tmp_path / "a")])
    assert kw["precisions"] == ("int8", "fp32") and kw["targets"] == ("onnx",) and kw["executor"] == "local"
    args, kw = _cli_calls(monkeypatch, "train", ["train", str(REPO / "assets" / "darknet" / "yolov4-tiny-synth.cfg"), "--data", data,
                                                 "--burn-in", "7", "--out", str(tmp_path / "t")])
    assert args == (data, str(tmp_path / "t")) and kw["model"].endswith(".cfg") and kw["burn_in"] == 7
    args, kw = _cli_calls(monkeypatch, "optimize", ["optimize", pt, "--data", data, "--speedup", "2.5",
                                                    "--budget-epochs", "12", "--teacher", "none", "--out",
                                                    str(tmp_path / "opt")])
    assert args == (pt, data, str(tmp_path / "opt")) and kw["speedup"] == 2.5 and kw["ratio"] is None
    assert kw["budget_epochs"] == 12 and kw["teacher"] is None and kw["train_device"] == "auto"
    assert kw["head_ratio"] is None  # not given: the recipe's own default, chosen in the API
    args, kw = _cli_calls(monkeypatch, "sparsify", ["sparsify", pt, "--data", data, "--ratio", "0.6", "--global",
                                                    "--out", str(tmp_path / "sp")])
    assert kw["ratio"] == 0.6 and kw["global_pruning"] is True and kw["method"] is None and kw["strength"] is None
    args, kw = _cli_calls(monkeypatch, "sparsify", ["sparsify", pt, "--data", data, "--ratio", "0.6", "--head-ratio",
                                                    "0", "--out", str(tmp_path / "sp")])
    assert kw["head_ratio"] == 0.0 and kw["layers"] == 0
    args, kw = _cli_calls(monkeypatch, "sparsify", ["sparsify", pt, "--data", data, "--layers", "2", "--out",
                                                    str(tmp_path / "sp")])
    assert kw["layers"] == 2
    (tmp_path / "run").mkdir()
    args, kw = _cli_calls(monkeypatch, "report", ["report", str(tmp_path / "run"), "--no-curves"])
    assert args == (str(tmp_path / "run"),) and kw["curves"] is False


def test_deploy_reports_its_phases_and_counts_to_progress(synth_data, tmp_path):
    """The phases inside deploy reach the caller's progress object; evaluation counts the val images (ETA)."""
    import edgeprune
    from toolchain.models.imagedata import image_files

    class Recorder:
        def __init__(self):
            self.messages, self.counts = [], []

        def update(self, message):
            self.messages.append(message)

        def advance(self, done, total=None):
            self.counts.append((done, total))

    seen = Recorder()
    edgeprune.deploy(str(REPO / "assets" / "yolov8n-synth.pt"), "onnx", str(tmp_path / "o"), precision="fp32",
                     data=str(synth_data), progress=seen)
    for phase in ("exporting to onnx (fp32)", "fp32: fidelity against PyTorch",
                  "fp32: mAP of the artifact on the val split"):
        assert phase in seen.messages, seen.messages
    val = len(image_files(synth_data, "val"))
    assert seen.counts.count((val, val)) >= 1 and (1, val) in seen.counts
