"""The demo pipeline as a recipe of ordinary ``edgeprune`` commands.

Why a recipe: the demo must show what a user would type, so each step runs the real CLI in a
subprocess with ``--json`` and reads its result; nothing here is demo-only logic. A step
whose result file already exists is skipped, so an interrupted ``make demo`` resumes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from toolchain.errors import EdgepruneError

REPO_BASELINE = Path(__file__).resolve().parents[1] / "assets" / "yolov8n-synth.pt"


@dataclass
class Step:
    name: str
    args: list[str]
    result_file: Path  # the step is done when this exists


@dataclass
class DemoResult:
    out: str
    steps: dict = field(default_factory=dict)
    table: list[dict] = field(default_factory=list)
    streams: list | None = None
    report: dict | None = None

    def to_json(self) -> dict:
        return {"out": self.out, "steps": self.steps, "table": self.table, "streams": self.streams,
                "report": self.report}


def _run_step(step: Step, log) -> dict:
    if step.result_file.exists():
        log(f"skip {step.name}: {step.result_file.name} exists")
        return json.loads(step.result_file.read_text())
    cmd = [sys.executable, "-m", "toolchain.cli.main", *step.args, "--json"]
    log(f"run  {step.name}: edgeprune {' '.join(step.args)}")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise EdgepruneError(f"demo step {step.name!r} failed (exit {proc.returncode}); see the messages above")
    step.result_file.write_text(proc.stdout)
    return json.loads(proc.stdout)


def _artifacts(out: Path, data_yaml: Path, baseline: Path, tuned: Path) -> list[tuple[str, str, Path, list[str]]]:
    """(label, runtime, deploy folder, deploy args) for every artifact the demo builds."""
    common = ["--data", str(data_yaml)]
    return [
        ("unpruned FP32", "openvino", out / "deploy" / "base-ov-fp32", [str(baseline), "--precision", "fp32", *common]),
        ("pruned FP32", "openvino", out / "deploy" / "pruned-ov-fp32", [str(tuned), "--precision", "fp32", *common]),
        ("pruned INT8", "openvino", out / "deploy" / "pruned-ov-int8",
         [str(tuned), "--precision", "int8", "--dynamic-shape", *common]),
        ("pruned FP32", "onnx", out / "deploy" / "pruned-onnx-fp32", [str(tuned), "--precision", "fp32", *common]),
        ("pruned INT8", "onnx", out / "deploy" / "pruned-onnx-int8", [str(tuned), "--precision", "int8", *common]),
    ]


def run_demo(out: str | Path, fast: bool = False, ratio: float = 0.3, log=print) -> DemoResult:
    """Synthetic data → baseline → prune → fine-tune → deploy → bench → sweep → report, each an edgeprune command."""
    out = Path(out).resolve()
    results = out / "results"
    results.mkdir(parents=True, exist_ok=True)
    data_yaml = out / "data" / "data.yaml"
    baseline = out / "baseline.pt"
    if not baseline.exists():
        if not REPO_BASELINE.exists():
            raise EdgepruneError(f"the committed baseline {REPO_BASELINE} is missing; run `make baseline`")
        shutil.copyfile(REPO_BASELINE, baseline)
    epochs = "3" if fast else "20"
    bench_seconds = "2" if fast else "8"
    tuned = out / "finetune" / "weights" / "best.pt"
    steps = [
        Step("data", ["data", "synth", str(out / "data")], results / "data.json"),
        Step("prune", ["prune", str(baseline), "--ratio", str(ratio), "--data", str(data_yaml),
                       "--out", str(out / "pruned.pt")], results / "prune.json"),
        Step("finetune", ["finetune", str(out / "pruned.pt"), "--data", str(data_yaml), "--epochs", epochs,
                          "--out", str(out / "finetune")], results / "finetune.json"),
    ]
    demo = DemoResult(str(out))
    for step in steps:
        demo.steps[step.name] = _run_step(step, log)
    prune = demo.steps["prune"]
    for label, runtime, folder, args in _artifacts(out, data_yaml, baseline, tuned):
        key = folder.name
        deploy = _run_step(Step(f"deploy {key}", ["deploy", runtime, *args, "--out", str(folder)],
                                results / f"deploy-{key}.json"), log)
        precision = ["--precision", "f32"] if label == "unpruned FP32" else []
        bench = _run_step(Step(f"bench {key}", ["bench", str(folder), "--duration", bench_seconds, *precision],
                               results / f"bench-{key}.json"), log)
        side = prune["before"] if label.startswith("unpruned") else prune["after"]
        acc = deploy["accuracy"]["artifact"]
        demo.table.append({
            "model": label, "runtime": runtime, "precision": f"{bench['artifact_precision']} / "
                                                             f"{bench['executed_precision']}",
            "params": side["params"], "macs": side["macs"], "artifact_bytes": deploy["artifact_bytes"],
            "map50_95": acc["map50_95"], "map50": acc["map50"], "fps": bench["throughput_fps"],
        })
    base_fps = demo.table[0]["fps"]
    base_map = demo.table[0]["map50_95"]
    for row in demo.table:
        row["speedup"] = row["fps"] / base_fps
        row["map50_95_drop"] = base_map - row["map50_95"]
    int8_dyn = out / "deploy" / "pruned-ov-int8"
    demo.streams = _run_step(Step("bench 4 streams", ["bench", str(int8_dyn), "--streams", "4", "--splice", "832",
                                                      "--duration", bench_seconds], results / "bench-streams.json"),
                             log)
    # Where is the knee without fine-tuning? A short sweep on OpenVINO, then the HTML report.
    sweep_dir = out / "sweep"
    _run_step(Step("sweep", ["sweep", str(baseline), "--data", str(data_yaml), "--ratios", "0.01,0.02,0.05,0.1,0.2",
                             "--round-to", "1", "--max-drop", "0.05", "--target", "openvino", "--out",
                             str(sweep_dir)], results / "sweep.json"), log)
    demo.report = _run_step(Step("report", ["report", str(sweep_dir)], results / "report.json"), log)
    return demo
