"""Prune for the device, not for MACs: per-block ratios from latencies measured on it, and a search for the
ratio that meets a latency or speedup target, measured on the device at every step.

Why: MACs do not predict latency. On a 2-core CPU the YOLO head at 256 px takes about a third
of the time for a small share of the MACs (high-resolution branches, memory-bound 1x1 convs,
the decode), and whether INT8 or a multiple of 8 channels is faster differs from machine to
machine. So:
* :func:`block_latencies` exports the unpruned model to an OpenVINO FP32 IR and reads the
  plugin's per-node performance counters over many inferences, summed per Ultralytics block
  (``model.N``) — a lookup table measured once per (device, runtime version, model, size) and
  cached in edgeprune's cache;
* :func:`block_ratios` gives each block a ratio growing with the square root of its share of
  the time, so blocks where time is spent lose more channels;
* :func:`search` bisects the overall scale of those ratios: every probe is pruned, exported
  and its latency measured on the device, until the smallest scale meeting the target is
  found; the channel multiple (``round_to``) is measured the same way, among a few candidates,
  instead of assumed;
* depth is a candidate too: the bisection is repeated with 2 and 4 residual units removed
  first (:mod:`toolchain.models.layer_prune`), and the configuration that meets the target keeping
  the most MACs wins — where per-layer overhead, not arithmetic, costs the time, removing
  depth buys the latency with less of the network's capacity than narrowing every layer;
* probes run in the precision of the fastest reference: where Ultralytics' INT8 export is the fastest (an
  AVX-512 EPYC, where the pruned INT8 IR also runs 10-20 % faster than its bf16 one), FP32 probes would have
  to meet a target the deployed INT8 IR meets at less pruning, and the search would cut more than needed;
* for a speedup target every probe is timed beside the reference, in interleaved rounds, and judged by the
  ratio: on a 2-core cloud EPYC the host's speed drifts by ±20 % within a minute, and a probe compared with a
  reference timed once, minutes earlier, was called 2.5x (507 M MACs) where the referee measured 1.8-1.9x.

The target is a latency in ms, or a speedup over the fastest of Ultralytics' own exports of
the unpruned model (FP32/FP16, and INT8 with ``data``), measured in the same run.
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from targets.base import ExportConfig
from targets.bench import measure_artifact, measure_interleaved
from targets.registry import get_target
from targets.ultralytics_exports import build_ultralytics_exports
from toolchain.core.errors import EdgepruneError
from toolchain.core.cache import cache_dir
from toolchain.core.fileio import sha256_of
from toolchain.core.latency import cpu_name
from toolchain.models.layer_prune import residual_units
from toolchain.models.loading import load_model
from toolchain.models.prune_job import prune_file
from toolchain.pipelines.deploy import deploy

PROFILE_RUNS = 30
SEARCH_STEPS = 6
MAX_RATIO = 0.85
ROUND_TO_CANDIDATES = (1, 8, 16)
PROBE_CALIB_IMAGES = 32  # an INT8 probe is exported for its latency only: which ops are quantised, not how well
DEPTH_CANDIDATES = (0, 2, 4)  # residual units removed before the width search
BESIDE_ROUNDS = 3  # a probe and the reference, alternately, this many times (the speedup: median of the ratios)
BESIDE_SECONDS = 1.0


@dataclass(frozen=True)
class DeviceGoal:
    """What to prune for.

    Args:
        target: runtime the model will run on (OpenVINO; its per-node profile is what is measured).
        device: its device (``CPU``...).
        latency_ms: median latency to reach (batch 1, latency hint, inference only).
        speedup: instead, FPS ratio to reach over the fastest Ultralytics export of the unpruned model.
        data: YOLO data.yaml, so the INT8 export counts among the references.
    """

    target: str = "openvino"
    device: str = "CPU"
    latency_ms: float | None = None
    speedup: float | None = None
    data: str | None = None

    def validate(self) -> None:
        if self.target != "openvino":
            raise EdgepruneError("latency-aware pruning reads OpenVINO's per-layer performance counters; "
                                 f"--target {self.target} is not supported (use openvino)")
        if (self.latency_ms is None) == (self.speedup is None):
            raise EdgepruneError("give exactly one of --latency-target MS and --speedup X")
        if (self.latency_ms is not None and self.latency_ms <= 0) or (self.speedup is not None and self.speedup <= 1):
            raise EdgepruneError("--latency-target must be positive and --speedup above 1")


@dataclass
class Probe:
    scale: float
    round_to: int | None
    mean_ratio: float
    latency_ms: float
    macs: int
    depth: int = 0  # residual units removed before the channels
    speedup: float | None = None  # over the reference, timed beside it (speedup targets; None for a latency target)


@dataclass
class SearchResult:
    """The chosen per-block ratios and every measurement behind them."""

    target_ms: float
    base: dict  # what the target is relative to
    block_ms: dict
    layer_ratios: dict
    round_to: int | None
    reached: bool
    probes: list[Probe] = field(default_factory=list)
    device: dict = field(default_factory=dict)
    depth: int = 0  # residual units to remove before the channels (prune_file's ``layers``)
    depth_choice: str = ""  # why this depth: the MACs kept by each depth that met the target

    def meets(self, probe: Probe) -> bool:
        """Whether ``probe`` meets the target: its speedup measured beside the reference, or its latency."""
        return meets(probe, self.base, self.target_ms)

    @property
    def precision(self) -> str:
        """What the probes were exported as (derived from ``base``, so results saved before it load alike)."""
        return probe_precision(self.base)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "SearchResult":
        return cls(**{**data, "probes": [Probe(**p) for p in data.get("probes", [])]})

    def describe(self) -> str:
        """What the search found, for a command's notes: the target, whether it was met, and what was measured.

        Why spelled out when missed: the prune then goes on at the largest ratios the search allows, and the
        user who asked for ``--speedup X`` must read what the device gave instead, not only the final table.
        """
        over = self.base.get("over")
        goal = (f"{self.base['speedup']:g}x {over['label']} ({over['latency_ms']:.2f} ms): {self.target_ms:.2f} ms"
                if over else f"{self.target_ms:.2f} ms")
        where = (f"{len(self.probes)} probes measured on {self.device.get('cpu')} as {self.precision.upper()} "
                 f"IRs, executed {self.device.get('executed_precision')}")
        if self.reached:
            chosen = min((p for p in self.probes if self.meets(p) and p.depth == self.depth), key=lambda p: p.scale)
            return (f"target {goal} reached ({chosen.latency_ms:.2f} ms{_as_speedup(chosen, over)}, mean block ratio "
                    f"{chosen.mean_ratio:.2f}, "
                    f"channels rounded to {self.round_to}, {self.depth} residual units removed); {where}"
                    + (f"; depth: {self.depth_choice}" if self.depth_choice else ""))
        fastest = min(self.probes, key=_cost)
        return (f"target {goal} NOT reached at the largest ratios the search allows (blocks up to {MAX_RATIO}, up "
                f"to {max(p.depth for p in self.probes)} residual units removed): the fastest probe ran "
                f"{fastest.latency_ms:.2f} ms{_as_speedup(fastest, over)} (mean block ratio {fastest.mean_ratio:.2f}, "
                f"{fastest.depth} units removed); pruned at "
                f"the largest ratios, {self.depth} units removed; {where}")


def meets(probe: Probe, base: dict, target_ms: float) -> bool:
    """A speedup target is met by the ratio measured beside the reference; a latency target (or a probe saved
    before probes had a ratio) by the latency."""
    if "speedup" in base and probe.speedup is not None:
        return probe.speedup >= base["speedup"]
    return probe.latency_ms <= target_ms


def _cost(probe: Probe) -> float:
    """What the search minimises: the latency, or for a speedup target the inverse of the ratio."""
    return probe.latency_ms if probe.speedup is None else 1 / probe.speedup


def _as_speedup(probe: Probe, over: dict | None) -> str:
    if probe.speedup is not None:
        return f", {probe.speedup:.2f}x the reference timed beside it"
    return f", {over['latency_ms'] / probe.latency_ms:.2f}x" if over else ""


def probe_precision(base: dict) -> str:
    """The precision to export probes in: the fastest reference's, INT8 or else FP32 (a CPU runs FP16 IRs as it runs
    FP32 ones); FP32 for a latency target, which has no reference."""
    return "int8" if base.get("over", {}).get("precision") == "int8" else "fp32"


def _measure_ms(artifact: str, device: str, seconds: float = 2.0) -> tuple[float, dict]:
    """Median latency of an OpenVINO artifact on ``device``, and the conditions it was measured under."""

    result = measure_artifact(get_target("openvino"), artifact, device, seconds)
    return result.latency.median_ms, _conditions(result)


def _measure_beside(artifact: str, reference: str, device: str) -> tuple[float, float, dict]:
    """Median latency of ``artifact``, its speedup over ``reference`` (median of the per-round ratios, the two
    timed in :data:`BESIDE_ROUNDS` interleaved rounds), and the conditions ``artifact`` was measured under."""

    rounds = measure_interleaved(get_target("openvino"), [artifact, reference], device, BESIDE_ROUNDS, BESIDE_SECONDS)
    ms = statistics.median(r[0].latency.median_ms for r in rounds)
    speedup = statistics.median(r[1].latency.median_ms / r[0].latency.median_ms for r in rounds)
    return ms, speedup, _conditions(rounds[-1][0])


def _conditions(result) -> dict:
    """What a probe's timing was measured under, for the search's record."""
    return {"cpu": result.cpu, "executed_precision": result.executed_precision, "threads": result.threads,
            "backend_version": result.backend_version, "hint": result.hint, "batch": result.batch,
            "includes_pre_post": False}


def _export(model_path: str, out: Path, imgsz: int, precision: str = "fp32", data: str | None = None) -> str:
    config = ExportConfig(precision=precision, imgsz=imgsz, data=data, calib_images=PROBE_CALIB_IMAGES)
    return deploy("openvino", model_path, out, config, evaluate=False).artifact


def block_latencies(model_path: str, imgsz: int, device: str = "CPU") -> dict[str, float]:
    """Median milliseconds per Ultralytics block (``"22"``...) of the model's FP32 IR on ``device`` (cached)."""
    import numpy as np
    import openvino as ov

    key = re.sub(r"[^A-Za-z0-9]+", "_", f"{cpu_name()}-{ov.__version__}-{device}-{imgsz}-{sha256_of(model_path)[:16]}")
    cached = cache_dir("latency") / f"{key}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    with tempfile.TemporaryDirectory(prefix="edgeprune-profile-") as tmp:
        xml = next(Path(_export(model_path, Path(tmp), imgsz)).glob("*.xml"))
        compiled = ov.Core().compile_model(str(xml), device, {"PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        x = np.random.default_rng(0).random(tuple(compiled.inputs[0].get_shape()), dtype=np.float32)
        runs: dict[str, list[float]] = {}
        for i in range(PROFILE_RUNS + 5):
            request.infer({0: x})
            if i < 5:
                continue  # warm-up
            per_block: dict[str, float] = {}
            for node in request.get_profiling_info():
                match = re.search(r"__module\.model\.(\d+)", node.node_name)
                if match:
                    per_block[match.group(1)] = per_block.get(match.group(1), 0.0) + node.real_time.total_seconds() * 1e3
            for block, ms in per_block.items():
                runs.setdefault(block, []).append(ms)
    table = {block: statistics.median(values) for block, values in sorted(runs.items(), key=lambda kv: int(kv[0]))}
    cached.write_text(json.dumps(table, indent=1))
    return table


def block_ratios(block_ms: dict[str, float], scale: float, max_ratio: float = MAX_RATIO) -> dict[int, float]:
    """Per block, ``scale * sqrt(its time / the median block time)``, capped at ``max_ratio``."""
    times = [t for t in block_ms.values() if t > 0]
    if not times:
        raise EdgepruneError("the device profile attributes no time to any block")
    median = statistics.median(times)
    return {int(b): round(min(max_ratio, scale * (t / median) ** 0.5), 4) for b, t in block_ms.items() if t > 0}


def search(model_path: str, goal: DeviceGoal, prune_cfg, progress=None) -> SearchResult:
    """The per-block ratios (and channel multiple) that meet ``goal`` on this device with the least pruning.

    ``prune_cfg`` gives the method and image size; its ratio is ignored.
    """

    goal.validate()
    imgsz = prune_cfg.imgsz
    say = progress or (lambda message: None)
    say("profiling the unpruned model on the device")
    block_ms = block_latencies(model_path, imgsz, goal.device)
    if goal.speedup is not None:
        refs, artifacts = [], {}
        for ref in build_ultralytics_exports(model_path, "openvino", imgsz, goal.data, progress=say):
            say(f"measuring {ref.label}")
            refs.append({"label": ref.label, "precision": ref.precision,
                         "latency_ms": _measure_ms(ref.artifact, goal.device)[0]})
            artifacts[ref.label] = ref.artifact
        best = min(refs, key=lambda r: r["latency_ms"])
        reference = artifacts[best["label"]]  # every probe is timed beside it
        target_ms, base = best["latency_ms"] / goal.speedup, {"speedup": goal.speedup, "over": best, "all": refs}
    else:
        reference, target_ms, base = None, goal.latency_ms, {"latency_ms": goal.latency_ms}
    precision = probe_precision(base)
    probes: list[Probe] = []
    device: dict = {}

    depths = [d for d in DEPTH_CANDIDATES if d <= _residual_unit_count(model_path)]
    with tempfile.TemporaryDirectory(prefix="edgeprune-search-") as tmp:
        def probe(scale: float, round_to: int | None, depth: int = 0) -> Probe:
            nonlocal device
            ratios = block_ratios(block_ms, scale)
            out = Path(tmp) / f"s{scale:.4f}-r{round_to}-d{depth}.pt"
            report = prune_file(model_path, str(out), replace(prune_cfg, ratio=0.0, layer_ratios=ratios,
                                                               round_to=round_to, global_pruning=False), layers=depth, evaluate=False)
            artifact = _export(str(out), Path(tmp) / out.stem, imgsz, precision, goal.data)
            if reference is None:
                (ms, device), speedup = _measure_ms(artifact, goal.device), None
            else:
                ms, speedup, device = _measure_beside(artifact, reference, goal.device)
            found = Probe(scale, round_to, round(statistics.mean(ratios.values()), 4), ms, report.after.macs, depth,
                          None if speedup is None else round(speedup, 4))
            probes.append(found)
            wanted = f"{target_ms:.2f} ms" if speedup is None else f"{goal.speedup:g}x"
            say(f"depth -{depth}, scale {scale:.3f} (mean ratio {found.mean_ratio:.2f}, round to {round_to}): "
                f"{ms:.2f} ms{_as_speedup(found, None)}, target {wanted}")
            return found

        # twice the scale at which the slowest block reaches the cap: blocks with at least a quarter of its
        # time are capped there, the rest prune in proportion
        top = MAX_RATIO / max((t / statistics.median([v for v in block_ms.values() if v > 0])) ** 0.5
                              for t in block_ms.values() if t > 0) * 2.0
        mid = [probe(top / 2, r) for r in ROUND_TO_CANDIDATES]  # the channel multiple, measured at one scale
        fastest = min(_cost(p) for p in mid)
        round_to = min((p for p in mid if _cost(p) <= fastest * 1.02), key=lambda p: p.round_to or 1).round_to

        def bisect(depth: int) -> Probe | None:
            """The probe at the smallest scale meeting the target with ``depth`` units removed (None: unreachable)."""
            first = next((p for p in mid if p.round_to == round_to), None) if depth == 0 else probe(top / 2, round_to,
                                                                                                  depth)
            low, high, best = 0.0, top, None
            if meets(first, base, target_ms):
                high, best = top / 2, first
            else:
                low = top / 2
                best = probe(top, round_to, depth)
                if not meets(best, base, target_ms):
                    return None
            for _ in range(SEARCH_STEPS - 1):
                middle = (low + high) / 2
                tried = probe(middle, round_to, depth)
                if meets(tried, base, target_ms):
                    high, best = middle, tried
                else:
                    low = middle
            return best

        met = {depth: bisect(depth) for depth in depths}
    reached = {depth: p for depth, p in met.items() if p is not None}
    if not reached:
        return SearchResult(target_ms, base, block_ms, block_ratios(block_ms, top), round_to, False, probes, device)
    depth, best = max(reached.items(), key=lambda kv: (kv[1].macs, -kv[0]))
    why = "; ".join(f"{d} units removed: {p.macs / 1e6:.1f} M MACs kept" if p else f"{d} units removed: not reached"
                    for d, p in met.items())
    return SearchResult(target_ms, base, block_ms, block_ratios(block_ms, best.scale), round_to, True, probes, device,
                        depth, f"the target met keeping the most MACs ({why})")


def _residual_unit_count(model_path: str) -> int:
    """Residual units the model has (0 for plain modules and models without shortcuts)."""

    return len(residual_units(load_model(model_path).model))
