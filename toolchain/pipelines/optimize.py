"""The whole recipe as one resumable run: sparsify → prune → fine-tune (distilled) → deploy → honest comparison.

Why one command: users glue these steps by hand and get them subtly wrong (prune a model whose
BatchNorm scales were never made sparse, fine-tune from a teacher that is not the model they
started from, compare against a slow export). Each step here is the library function the
single command runs, with the settings the next step needs:
1. **eval** — the unpruned model's mAP50-95 (Ultralytics validator): what every drop is against.
2. **search** (``speedup`` only) — per-block ratios, depth and channel multiple measured on the
   target device (:mod:`toolchain.pipelines.latency_aware`); with ``ratio`` the prune is that ratio.
3. **sparsify** — the channels that prune removes (and the residual units the search removes) are
   ramped to zero while the rest trains (:mod:`toolchain.models.sparsity`), a share of the epoch budget.
4. **prune** — ``--method bn`` with the same settings: only dead channels go, so its mAP right
   after pruning equals the sparsified model's (both are recorded). The task head's inner convs
   lose their own, smaller share (:data:`HEAD_RATIO`) in steps 3 and 4.
5. **finetune** — the rest of the budget, distilled from the unpruned model.
6. **deploy** — FP32 and INT8 artifacts of the fine-tuned model for the target.
7. **compare** — those artifacts against Ultralytics' own FP32/FP16/INT8 exports of the unpruned
   model, built and measured in the same process with the same settings, inference and end to end.

Every finished step leaves ``OUT/steps/<step>.json``; rerunning with the same ``OUT`` skips those
(an interrupted run resumes at the step it was in). The result's table is what the command prints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from targets.base import ExportConfig
from targets.bench import BenchConfig
from toolchain.core.errors import EdgepruneError
from toolchain.core.fileio import atomic_output, left_by_killed_run
from toolchain.models.loading import check_model_fits_data, load_model
from toolchain.models.prune_job import prune_file
from toolchain.models.pruning import PruneConfig
from toolchain.models.sparsity import SparsityConfig, sparsify
from toolchain.models.training import TrainConfig, finetune
from toolchain.models.validator import evaluate
from toolchain.pipelines.bench import compare_with_ultralytics
from toolchain.pipelines.deploy import deploy
from toolchain.pipelines.latency_aware import DeviceGoal, SearchResult, search

SPARSIFY_SHARE = 0.4  # of the epoch budget; the rest fine-tunes the pruned model
# The task head's inner convs lose this share whatever --ratio is: cut with the body at 0.7, the converged
# 256 px yolov8n's class branch collapsed (8 sparsify epochs: 0.292; head at 0.3: 0.641, whole: 0.651), see
# benchmarks/recovery.md "The head".
HEAD_RATIO = 0.3
DEFAULT_BUDGET = 40
STEPS = ("eval", "search", "sparsify", "prune", "finetune", "deploy", "compare")


@dataclass(frozen=True)
class OptimizeConfig:
    """What to optimise for and with how much training.

    Args:
        data: YOLO data.yaml (training, calibration and accuracy).
        ratio: channels to remove (as ``prune --ratio``); or
        speedup: the factor over the fastest Ultralytics export of the unpruned model to reach on
            ``target``/``device`` (the prune is then searched on the device).
        budget_epochs: training epochs added in all (sparsify + fine-tune).
        method, global_pruning, round_to: the prune's criterion, ranking and channel multiple.
        head_ratio: the share of the task head's inner channels removed (``ratio`` for the same as the body's).
        teacher: ``"unpruned"`` (the input model), ``"sparsified"`` or None (labels only).
        target, device: the runtime the model is deployed to and measured on.
        train_device: where training runs (``auto``: a GPU when present).
        imgsz, batch, workers: training and evaluation size (None: the checkpoint's), batch, loader workers.
        cache: keep decoded training images in RAM.
        bench_seconds: seconds per measurement in the comparison.
    """

    data: str
    ratio: float | None = None
    speedup: float | None = None
    budget_epochs: int = DEFAULT_BUDGET
    method: str = "bn"
    global_pruning: bool = False
    round_to: int | None = 8
    head_ratio: float = HEAD_RATIO
    teacher: str | None = "unpruned"
    target: str = "openvino"
    device: str = "CPU"
    train_device: str = "auto"
    imgsz: int | None = None
    batch: int = 16
    workers: int = 2
    cache: bool = False
    bench_seconds: float = 10.0

    def validate(self) -> None:
        if (self.ratio is None) == (self.speedup is None):
            raise EdgepruneError("give exactly one of --ratio R and --speedup X")
        if self.ratio is not None and not 0 < self.ratio < 1:
            raise EdgepruneError(f"--ratio must be between 0 and 1 (exclusive), got {self.ratio}")
        if self.speedup is not None and self.speedup <= 1:
            raise EdgepruneError(f"--speedup must be above 1, got {self.speedup}")
        if self.speedup is not None and self.global_pruning:
            raise EdgepruneError("--speedup searches per-block ratios (local pruning); drop --global")
        if not 0 <= self.head_ratio < 1:
            raise EdgepruneError(f"--head-ratio must be at least 0 and below 1, got {self.head_ratio}")
        if self.budget_epochs < 2:
            raise EdgepruneError(f"--budget-epochs must be at least 2 (sparsify and fine-tune), got {self.budget_epochs}")
        if self.teacher not in ("unpruned", "sparsified", None):
            raise EdgepruneError(f"the teacher is 'unpruned', 'sparsified' or none, got {self.teacher!r}")
        if self.target not in ("openvino", "onnx"):
            raise EdgepruneError(f"optimize deploys to openvino or onnx, got --target {self.target}")

    def epochs(self) -> tuple[int, int]:
        """(sparsify, fine-tune) epochs of the budget."""
        first = max(1, round(SPARSIFY_SHARE * self.budget_epochs))
        return first, max(1, self.budget_epochs - first)


@dataclass
class OptimizeResult:
    """Every step's result (as its JSON) and the final table."""

    model: str
    out: str
    config: dict
    steps: dict = field(default_factory=dict)
    table: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"model": self.model, "out": self.out, "config": self.config, "steps": self.steps,
                "table": self.table, "notes": self.notes}


class _Steps:
    """Runs each step once: a finished step's JSON in ``OUT/steps`` is read back instead of rerun."""

    def __init__(self, out: Path, log: Callable[[str], None]):
        self.folder = out / "steps"
        self.log = log
        self.done: dict[str, dict] = {}

    def run(self, name: str, work: Callable[[], object]) -> dict:
        path = self.folder / f"{name}.json"
        if path.exists():
            try:
                self.done[name] = json.loads(path.read_text())
                self.log(f"{name}: done in an earlier run ({path})")
                return self.done[name]
            except json.JSONDecodeError:
                self.log(f"{name}: {path} is damaged; running the step again")
        self.log(f"{name}: running")
        result = work()
        text = json.dumps(result.to_json() if hasattr(result, "to_json") else result, indent=2, default=str)
        with atomic_output(path) as tmp:
            tmp.write_text(text)
        # what the file holds, so a fresh run and a resumed one return the same record
        self.done[name] = record = json.loads(text)
        return record


def _train_config(cfg: OptimizeConfig, epochs: int, imgsz: int, out: Path):
    """The trainer's settings for a training step into ``out``; it resumes the epochs of a killed run of it.

    Why automatic: rerunning ``optimize`` with the same ``--out`` is how the recipe resumes, step
    by step; a step killed mid-training (its trainer state is staged beside ``out`` every epoch)
    continues from its last epoch instead of starting that step over.
    """
    left = left_by_killed_run(out)
    return TrainConfig(epochs=epochs, imgsz=imgsz, batch=cfg.batch, workers=cfg.workers, device=cfg.train_device,
                       cache=cfg.cache, resume=left is not None and (left / "weights" / "last.pt").exists())


def _prune_config(cfg: OptimizeConfig, search: dict | None, imgsz: int):
    if search:
        return PruneConfig(ratio=0.0, method=cfg.method, round_to=search["round_to"], imgsz=imgsz,
                           layer_ratios=search["layer_ratios"], head_ratio=cfg.head_ratio)
    return PruneConfig(ratio=cfg.ratio, method=cfg.method, global_pruning=cfg.global_pruning, round_to=cfg.round_to,
                       imgsz=imgsz, head_ratio=cfg.head_ratio)


def comparison_table(steps: dict, baseline_map: float) -> list[dict]:
    """One row per artifact compared: speed against the fastest Ultralytics export, accuracy against the input."""
    compared = steps["compare"]
    deployed = {d["artifact"]: d for d in steps["deploy"]["artifacts"]}
    rows = []
    for row in compared["rows"]:
        mine = deployed.get(row["label"])
        acc = mine["accuracy"]["artifact"] if mine and mine.get("accuracy") else None
        rows.append({
            "model": row["label"] if row["is_reference"] else f"pruned {mine['precision'].upper()}",
            "is_reference": row["is_reference"], "is_base": row["label"] == compared["base"],
            "stored_executed": f"{row['artifact_precision']} / {row['executed_precision']}",
            "macs": None if row["is_reference"] else steps["prune"]["after"]["macs"],
            "fps": row["throughput_fps"], "speedup": row["ratio_to_base"],
            "e2e_fps": row.get("e2e_fps"), "e2e_speedup": row.get("e2e_ratio_to_base"),
            "map50_95": acc["map50_95"] if acc else None,
            "drop_points": 100 * (baseline_map - acc["map50_95"]) if acc else None,
        })
    return rows


def optimize(model: str, out: str | Path, cfg: OptimizeConfig, log: Callable[[str], None] = print) -> OptimizeResult:
    """Run the recipe on ``model`` into ``out`` (resumable); see the module docstring for the steps.

    Raises:
        EdgepruneError: bad options, a model that is not an Ultralytics checkpoint, or a failing step.
    """

    cfg.validate()
    loaded = load_model(model)
    if not loaded.is_yolo:
        raise EdgepruneError(f"{model} is a plain nn.Module; optimize works on Ultralytics checkpoints")
    check_model_fits_data(loaded, cfg.data)
    out = Path(out).resolve()
    imgsz = cfg.imgsz or loaded.train_imgsz or 640
    sparsify_epochs, finetune_epochs = cfg.epochs()
    steps = _Steps(out, log)
    result = OptimizeResult(str(model), str(out), {**cfg.__dict__, "imgsz": imgsz,
                                                   "epochs": {"sparsify": sparsify_epochs,
                                                              "finetune": finetune_epochs}})

    base = steps.run("eval", lambda: evaluate(model, cfg.data, imgsz=imgsz, device=cfg.train_device))
    search = None
    if cfg.speedup is not None:
        search = steps.run("search", lambda: _search(model, cfg, imgsz, log))
    prune_cfg = _prune_config(cfg, search, imgsz)
    depth = int(search["depth"]) if search else 0  # residual units the prune removes: sparsify drives them to x

    sparse = steps.run("sparsify", lambda: sparsify(
        model, cfg.data, out / "sparsify", SparsityConfig(prune=prune_cfg, layers=depth,
                                                          train=_train_config(cfg, sparsify_epochs, imgsz,
                                                                              out / "sparsify")),
        on_epoch=lambda s: log(f"sparsify epoch {s.epoch}: {s.below.get('0.01', 0):.1%} of gamma below 0.01, "
                               f"mAP50-95 {s.map50_95 if s.map50_95 is not None else float('nan'):.3f}")))

    from dataclasses import replace

    pruned = out / "pruned.pt"
    steps.run("prune", lambda: prune_file(sparse["weights"], str(pruned), replace(prune_cfg, data=cfg.data), layers=depth))

    teacher = {"unpruned": model, "sparsified": sparse["weights"], None: None}[cfg.teacher]
    tuned = steps.run("finetune", lambda: finetune(str(pruned), cfg.data, out / "finetune",
                                                   _train_config(cfg, finetune_epochs, imgsz, out / "finetune"),
                                                   teacher=teacher))
    steps.run("deploy", lambda: _deploy(tuned["weights"], cfg, imgsz, out / "deploy"))
    steps.run("compare", lambda: _compare(steps.done["deploy"], model, cfg, imgsz, log))
    result.steps = steps.done
    result.table = comparison_table(steps.done, base["map50_95"])
    result.notes = ([f"--speedup {cfg.speedup:g}: {SearchResult.from_json(search).describe()}"] if search else []) \
        + list(sparse.get("notes", []))
    # finetune's own notes: its teacher, and whether it was still rising when the budget ran out
    result.notes += [f"fine-tuning ({finetune_epochs} of the {cfg.budget_epochs} --budget-epochs): {note}"
                     for note in tuned.get("notes", [])]
    with atomic_output(out / "optimize.json") as tmp:
        tmp.write_text(json.dumps(result.to_json(), indent=2, default=str))
    return result


def _search(model: str, cfg: OptimizeConfig, imgsz: int, log) -> dict:
    found = search(model, DeviceGoal(cfg.target, cfg.device, None, cfg.speedup, cfg.data),
                   PruneConfig(ratio=0.0, method=cfg.method, round_to=cfg.round_to, imgsz=imgsz,
                               head_ratio=cfg.head_ratio), log)
    return found.to_json()


def _deploy(weights: str, cfg: OptimizeConfig, imgsz: int, folder: Path) -> dict:
    """FP32 and INT8 artifacts of the fine-tuned model, each with its own measured accuracy."""

    built = []
    # Static at the model's size, as Ultralytics exports: a runtime that compiles the IR as it is (benchmark_app,
    # Ultralytics' AutoBackend) runs a dynamic-input YOLO IR 7-40 % slower (its anchors and splits are computed
    # per inference; benchmarks/recovery.md, "The shipped IR was dynamic"). A splice of streams into a larger
    # frame needs its own artifact, deployed with a dynamic input (edgeprune.demo does so).
    for precision in ("fp32", "int8"):
        res = deploy(cfg.target, weights, folder / precision, ExportConfig(precision=precision, imgsz=imgsz,
                                                                          data=cfg.data, device=cfg.device))
        built.append({"precision": precision, "artifact": str(res.artifact), "deploy_json": str(res.deploy_json),
                      "accuracy": res.record.get("accuracy")})
    return {"artifacts": built}


def _compare(deployed: dict, unpruned: str, cfg: OptimizeConfig, imgsz: int, log) -> dict:
    artifacts = [d["artifact"] for d in deployed["artifacts"]]
    bench = BenchConfig(device=cfg.device.lower(), duration=cfg.bench_seconds)
    return compare_with_ultralytics(artifacts, bench, unpruned=unpruned, data=cfg.data, imgsz=imgsz, e2e=True,
                                    progress=log).to_json()
