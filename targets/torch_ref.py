"""PyTorch as a target: the reference every exported artifact is compared against.

It "exports" nothing; it opens a ``.pt`` checkpoint as a :class:`~targets.torch_runner.TorchRunner` with the same graph
preparation (BN fused, YOLO head in export mode) that the real targets export from.
"""

from __future__ import annotations

from pathlib import Path

import torch

from targets.base import ExportConfig, Target
from targets.registry import register_target
from targets.torch_runner import TorchCudaRunner, TorchRunner
from toolchain.core.errors import EdgepruneError, InputFileError
from toolchain.models.sources import prepare, source_for


@register_target
class TorchTarget(Target):
    """The model itself in PyTorch (a checkpoint, or a Darknet cfg's generated module), run as the reference.

    It builds no artifact.
    """

    name = "torch"
    summary = "The PyTorch reference runner (bench/eval only); on --device cuda in f32 or f16, as a CUDA graph."
    compute_precisions = ("auto", "f32", "f16")

    def devices(self) -> list[str]:
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    def export(self, source, out_dir: Path, cfg: ExportConfig) -> str:
        raise EdgepruneError("the torch target is a reference runner; deploy to openvino or onnx instead")

    def owns(self, artifact: Path) -> bool:
        """Model files (any model source's) are run in torch; deployed artifacts are their runtime's."""

        try:
            source_for(artifact)
        except InputFileError:
            return False
        return Path(artifact).suffix.lower() not in (".yaml", ".yml")  # a yaml describes a model to train, no weights

    def open(self, artifact: Path, device: str = "cpu", precision: str = "auto", threads: int | None = None,
             hint: str = "latency", requests: int | None = None, input_hw: tuple[int, int] | None = None,
             batch: int = 1, weights: str | None = None) -> TorchRunner:
        cuda = device.lower().startswith("cuda")
        if not cuda and device.lower() != "cpu":
            raise EdgepruneError(f"the torch runner runs on cpu or cuda, got --device {device}")
        if precision not in ("auto", "f32") and not (cuda and precision == "f16"):
            raise EdgepruneError(f"the torch runner computes in f32 on the CPU and in f32 or f16 on CUDA, got "
                                 f"--infer-precision {precision} on {device}")
        shape = (1, 3, *input_hw) if input_hw and input_hw[0] != input_hw[1] else None  # the source says if it can
        # None: the model's own size (a checkpoint's training size, a cfg's [net] size)
        source = prepare(artifact, None if shape else (input_hw[0] if input_hw else None), shape, weights=weights)
        if cuda:
            return TorchCudaRunner(source.module, (batch, *source.example.shape[1:]),
                                   "f16" if precision == "f16" else "f32", head=source.head, resize=source.resize,
                                   device=device.lower())
        return TorchRunner.of(source, threads, batch)
