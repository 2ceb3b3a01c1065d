"""The latency probe ``prune`` reports with: the bench harness's loop and statistics, on the torch model.

Why here: measuring belongs to the bench harness (:mod:`targets.bench`), which sits above the model
layer that prunes; :func:`torch_latency` hands the prune job (:mod:`toolchain.models.prune_job`) a probe.
"""

from __future__ import annotations

from targets.bench import BenchConfig, measure_inference
from targets.torch_runner import TorchRunner
from toolchain.core.latency import LatencyStats

LATENCY_WARMUP = 5


def torch_latency(iterations: int):
    """A probe timing a torch model on the CPU ``iterations`` times after warm-up, and saying how."""

    def probe(model, example) -> tuple[LatencyStats, dict]:
        cfg = BenchConfig(backend="torch", duration=None, iterations=iterations, warmup=LATENCY_WARMUP)
        bench = measure_inference(TorchRunner(model, tuple(example.shape)), "torch", cfg)
        return bench.latency, {
            "cpu": bench.cpu, "backend": f"torch {bench.backend_version}",
            "executed_precision": bench.executed_precision, "batch": bench.batch, "threads": bench.threads,
            "iterations": bench.iterations, "warmup": bench.warmup, "includes_pre_post": bench.includes_pre_post}
    return probe
