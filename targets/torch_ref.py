"""PyTorch as a target: the reference every exported artifact is compared against.

It "exports" nothing; it opens a ``.pt`` checkpoint as a :class:`Runner` with the same graph
preparation (BN fused, YOLO head in export mode) that the real targets export from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from targets.base import ExportConfig, Runner, RunnerInfo, Target
from targets.registry import register_target
from toolchain.contract import flat_tensors
from toolchain.errors import EdgepruneError


class TorchRunner(Runner):
    """A torch module on the CPU in float32 under ``inference_mode``, fed ``input_shape`` arrays."""

    def __init__(self, module: torch.nn.Module, input_shape: tuple[int, ...], threads: int | None = None,
                 head: dict | None = None, resize: str = "letterbox"):
        if threads:
            torch.set_num_threads(int(threads))
        self.module = module.eval()
        self.info = RunnerInfo(
            backend="torch", backend_version=torch.__version__, device="cpu", artifact_precision="fp32",
            executed_precision="f32", threads=torch.get_num_threads(), input_name="images",
            input_shape=tuple(int(d) for d in input_shape),
        )
        self.head, self.resize = head, resize

    @classmethod
    def of(cls, source, threads: int | None = None, batch: int = 1) -> "TorchRunner":
        """The runner of a prepared :class:`toolchain.sources.ExportSource`, decoding as its artifacts will."""
        return cls(source.module, (batch, *source.example.shape[1:]), threads, source.head, source.resize)

    def outputs(self, x: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return [t.numpy() for t in flat_tensors(out)]


@register_target
class TorchTarget(Target):
    """The model itself in PyTorch (a checkpoint, or a Darknet cfg's generated module), run as the reference.

    It builds no artifact.
    """

    name = "torch"
    summary = "The PyTorch reference runner (bench/eval only)."

    def devices(self) -> list[str]:
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    def export(self, source, out_dir: Path, cfg: ExportConfig) -> str:
        raise EdgepruneError("the torch target is a reference runner; deploy to openvino or onnx instead")

    def owns(self, artifact: Path) -> bool:
        return Path(artifact).suffix.lower() in (".pt", ".pth", ".cfg")

    def open(self, artifact: Path, device: str = "cpu", precision: str = "auto", threads: int | None = None,
             hint: str = "latency", requests: int | None = None, input_hw: tuple[int, int] | None = None,
             batch: int = 1, weights: str | None = None) -> TorchRunner:
        from toolchain.sources import prepare

        if device.lower() != "cpu":
            raise EdgepruneError(f"the torch reference runner uses the CPU only, got --device {device}")
        if precision not in ("auto", "f32"):
            raise EdgepruneError(f"the torch reference runner computes in f32 only, got --precision {precision}")
        shape = (1, 3, *input_hw) if input_hw and input_hw[0] != input_hw[1] else None
        if shape and Path(artifact).suffix.lower() != ".cfg":
            raise EdgepruneError(f"the torch reference runner takes square inputs, got {input_hw[0]}x{input_hw[1]}")
        # None: the model's own size (a checkpoint's training size, a cfg's [net] size)
        source = prepare(artifact, None if shape else (input_hw[0] if input_hw else None), shape, weights=weights)
        return TorchRunner.of(source, threads, batch)
