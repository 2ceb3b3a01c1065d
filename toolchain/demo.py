"""The demo pipeline as a recipe of ordinary ``edgeprune`` commands.

Why a recipe: the demo must show what a user would type, so each step runs the real CLI in a
subprocess with ``--json`` and reads its result; nothing here is demo-only logic. A step
whose output already exists is skipped, so an interrupted ``make demo`` resumes.
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
    output: Path  # the step is done when this exists
    result_file: Path


@dataclass
class DemoResult:
    out: str
    steps: dict = field(default_factory=dict)
    table: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"out": self.out, "steps": self.steps, "table": self.table}


def _run_step(step: Step, log) -> dict:
    if step.output.exists() and step.result_file.exists():
        log(f"skip {step.name}: {step.output} exists")
        return json.loads(step.result_file.read_text())
    cmd = [sys.executable, "-m", "toolchain.cli.main", *step.args, "--json"]
    log(f"run  {step.name}: edgeprune {' '.join(step.args)}")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise EdgepruneError(f"demo step {step.name!r} failed (exit {proc.returncode}); see the messages above")
    step.result_file.write_text(proc.stdout)
    return json.loads(proc.stdout)


def run_demo(out: str | Path, fast: bool = False, log=print) -> DemoResult:
    """Synthetic data → baseline → prune → fine-tune → evaluate, each an edgeprune command."""
    out = Path(out).resolve()
    results = out / "results"
    results.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    data_yaml = data / "data.yaml"
    baseline = out / "baseline.pt"
    if not baseline.exists():
        if not REPO_BASELINE.exists():
            raise EdgepruneError(f"the committed baseline {REPO_BASELINE} is missing; run `make baseline`")
        shutil.copyfile(REPO_BASELINE, baseline)
    epochs = "3" if fast else "20"
    steps = [
        Step("data", ["data", "synth", str(data)], data_yaml, results / "data.json"),
        Step("prune", ["prune", str(baseline), "--ratio", "0.5", "--data", str(data_yaml),
                       "--out", str(out / "pruned.pt")], out / "pruned.pt", results / "prune.json"),
        Step("finetune", ["finetune", str(out / "pruned.pt"), "--data", str(data_yaml), "--epochs", epochs,
                          "--out", str(out / "finetune")], out / "finetune" / "weights" / "best.pt",
             results / "finetune.json"),
        Step("eval-baseline", ["eval", str(baseline), "--data", str(data_yaml)], results / "eval-baseline.json",
             results / "eval-baseline.json"),
        Step("eval-pruned", ["eval", str(out / "finetune" / "weights" / "best.pt"), "--data", str(data_yaml)],
             results / "eval-pruned.json", results / "eval-pruned.json"),
    ]
    demo = DemoResult(str(out))
    for step in steps:
        demo.steps[step.name] = _run_step(step, log)
    prune, base_eval, tuned_eval = demo.steps["prune"], demo.steps["eval-baseline"], demo.steps["eval-pruned"]
    for label, side, ev in (("baseline (FP32, torch)", prune["before"], base_eval),
                            ("pruned 0.5 + fine-tuned (FP32, torch)", prune["after"], tuned_eval)):
        demo.table.append({
            "model": label, "params": side["params"], "macs": side["macs"], "file_bytes": side["file_bytes"],
            "map50_95": ev["map50_95"], "map50": ev["map50"],
            "latency_ms": side["latency"]["median_ms"] if side["latency"] else None,
        })
    base_latency = demo.table[0]["latency_ms"]
    for row in demo.table:
        row["speedup"] = base_latency / row["latency_ms"] if base_latency and row["latency_ms"] else None
    return demo
