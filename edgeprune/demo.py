"""The demo: synthetic data → ``optimize`` on the committed baseline → the 4-stream splice, through the API.

Why it is this short: the demo must show what a user runs, and a user runs ``edgeprune
optimize`` (:mod:`toolchain.pipelines.optimize`), so the demo is that command on the built-in data with a
budget that fits a quarter of an hour on two CPU cores, plus the video splice a camera
application would use. Every step is resumable because optimize's are: rerunning with the same
folder skips what finished.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from toolchain.core.errors import EdgepruneError

REPO_BASELINE = Path(__file__).resolve().parents[1] / "assets" / "yolov8n-synth.pt"
DEMO_RATIO = 0.7
DEMO_BUDGET = 14  # epochs: make demo took 9 min on 2 quiet cores (2026-12-05; make demo must stay <= 15 min)
FULL_BUDGET = 95  # the long recipe (make demo-full)
FAST_BUDGET = 2


@dataclass
class DemoResult:
    out: str
    optimize: object = None  # toolchain.pipelines.optimize.OptimizeResult
    streams: list = field(default_factory=list)

    @property
    def table(self) -> list[dict]:
        return self.optimize.table if self.optimize else []

    def to_json(self) -> dict:
        return {"out": self.out, "optimize": self.optimize.to_json() if self.optimize else None,
                "table": self.table, "streams": [s.to_json() for s in self.streams]}


def run_demo(out: str | Path, fast: bool = False, ratio: float = DEMO_RATIO, budget: int | None = None,
             log: Callable[[str], None] = print) -> DemoResult:
    """Synthetic data → optimize (sparsify → prune → fine-tune → deploy → compare with Ultralytics' exports)
    → four 416 streams spliced into one 832 input, on the pruned INT8 IR.

    The speed of every artifact is divided by the fastest of Ultralytics' own FP32/FP16/INT8
    exports of the unpruned model, built and measured in the same run with the same settings.
    """
    import edgeprune
    from toolchain.core.synth import SynthConfig, generate

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_yaml = out / "data" / "data.yaml"
    if not data_yaml.exists():
        log("data: writing the synthetic data set")
        generate(out / "data", SynthConfig())
    baseline = out / "baseline.pt"
    if not baseline.exists():
        if not REPO_BASELINE.exists():
            raise EdgepruneError(f"the committed baseline {REPO_BASELINE} is missing; run `make baseline`")
        shutil.copyfile(REPO_BASELINE, baseline)
    budget = budget or (FAST_BUDGET if fast else DEMO_BUDGET)
    demo = DemoResult(str(out))
    demo.optimize = edgeprune.optimize(str(baseline), str(data_yaml), str(out / "optimize"), ratio=ratio,
                                       budget_epochs=budget, bench_seconds=2.0 if fast else 8.0, log=log)
    int8 = next(d["artifact"] for d in demo.optimize.steps["deploy"]["artifacts"] if d["precision"] == "int8")
    log("streams: four 416 streams spliced into one 832 input, pruned INT8 IR")
    demo.streams = edgeprune.bench(int8, streams=4, splice=832, duration=2.0 if fast else 8.0)
    return demo
