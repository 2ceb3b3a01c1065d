"""Size and cost of a model: parameters, MACs, file sizes, measured latency.

Why: pruning is only worth it if these move. MACs come from Torch-Pruning's counter at the
real input size; latency is measured, never estimated, and always reported with the device,
precision, batch and thread count it was measured with (pre/post-processing excluded).
"""

from __future__ import annotations

import copy
import platform
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelStats:
    """Parameter count and multiply-accumulates for one forward pass at ``input_shape``."""

    params: int
    macs: int
    input_shape: tuple[int, ...]

    def to_json(self) -> dict:
        return asdict(self)


def model_stats(model: nn.Module, example: torch.Tensor) -> ModelStats:
    """Count parameters and MACs of ``model`` on ``example`` (the model is not modified)."""
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(copy.deepcopy(model).eval(), example)
    return ModelStats(int(params), int(macs), tuple(example.shape))


def zero_fraction(model: nn.Module) -> float:
    """Fraction of exactly-zero values among all weight tensors of conv and linear layers."""
    zeros = total = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            zeros += int((m.weight == 0).sum())
            total += m.weight.numel()
    return zeros / total if total else 0.0


@dataclass(frozen=True)
class LatencyStats:
    """Inference-only latency of a torch model, with the conditions it was measured under."""

    median_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    iterations: int
    warmup: int
    device: str
    precision: str
    batch: int
    threads: int
    includes_pre_post: bool = False

    def to_json(self) -> dict:
        return asdict(self)

    def label(self) -> str:
        return (
            f"{self.device}, {self.precision}, batch {self.batch}, {self.threads} threads, "
            f"median of {self.iterations} runs, inference only"
        )


def cpu_name() -> str:
    """Human name of the CPU, for labelling numbers."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_latency(model: nn.Module, example: torch.Tensor, iterations: int = 30, warmup: int = 5) -> LatencyStats:
    """Time ``model(example)`` on the CPU in float32 under ``torch.inference_mode``."""
    model = model.eval()
    with torch.inference_mode():
        for _ in range(warmup):
            model(example)
        times = []
        for _ in range(iterations):
            start = time.perf_counter()
            model(example)
            times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return LatencyStats(
        median_ms=statistics.median(times),
        p90_ms=times[min(len(times) - 1, int(0.9 * len(times)))],
        min_ms=times[0],
        max_ms=times[-1],
        iterations=iterations,
        warmup=warmup,
        device=f"CPU ({cpu_name()}) via torch {torch.__version__}",
        precision=str(next(model.parameters()).dtype).replace("torch.", ""),
        batch=int(example.shape[0]),
        threads=torch.get_num_threads(),
    )
