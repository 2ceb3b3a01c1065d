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

    assert set(edgeprune.__all__) == {"EdgepruneError", "bench", "deploy", "evaluate", "finetune", "load", "prune",
                                      "report", "sweep"}
    for name in edgeprune.__all__:
        assert getattr(edgeprune, name).__doc__, name
    assert os.environ.get("YOLO_OFFLINE") == "1"


def test_api_errors_are_edgeprune_errors(tmp_path):
    import pytest

    import edgeprune

    with pytest.raises(edgeprune.EdgepruneError, match="ratio= .* or layers="):
        edgeprune.prune(str(REPO / "assets" / "yolov8n-synth.pt"), str(tmp_path / "x.pt"))
