"""Torch modules as runners: the CPU reference every artifact is compared with, and CUDA with graphs.

Why apart from the torch target: verification and evaluation run the source model through the
same :class:`~targets.runner.Runner` interface as the artifact, without needing the target registry.
"""

from __future__ import annotations

import numpy as np
import torch

from targets.runner import Runner, RunnerInfo
from toolchain.core.errors import EdgepruneError
from toolchain.models.contract import flat_tensors


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
        """The runner of a prepared :class:`toolchain.models.sources.ExportSource`, decoding as its artifacts will."""
        return cls(source.module, (batch, *source.example.shape[1:]), threads, source.head, source.resize)

    def outputs(self, x: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return [t.numpy() for t in flat_tensors(out)]


class TorchCudaRunner(Runner):
    """A torch module on a CUDA device, in float32 or float16, replayed as a CUDA graph by default.

    Why a graph: at batch 1 a small pruned detector spends most of its time launching ~200
    kernels, not computing; replaying the captured graph removes that overhead, which is what
    a deployment on the GPU would do (TensorRT, torch.compile's cudagraphs). The timed loop
    (:meth:`run_loop`) measures device time per inference: the input is uploaded once before
    timing (as benchmark_app fills it once) and each inference ends in a synchronize;
    :meth:`outputs` copies inputs in and outputs out for evaluation.
    """

    def __init__(self, module: torch.nn.Module, input_shape: tuple[int, ...], precision: str = "f32",
                 graphs: bool = True, head: dict | None = None, resize: str = "letterbox", device: str = "cuda"):
        if not torch.cuda.is_available():
            raise EdgepruneError("--device cuda needs a CUDA GPU and a CUDA build of torch; none is available here "
                                 f"(torch {torch.__version__})")
        self.device = torch.device(device)
        self.dtype = torch.float16 if precision == "f16" else torch.float32
        self.module = module.eval().to(self.device, self.dtype)
        self.static_in = torch.zeros(input_shape, device=self.device, dtype=self.dtype)
        self.graph = None
        self.static_out: list[torch.Tensor] = []
        if graphs:
            self._capture()
        name = torch.cuda.get_device_name(self.device)
        self.info = RunnerInfo(
            backend="torch", backend_version=f"{torch.__version__} (CUDA {torch.version.cuda}"
                                             f"{', CUDA graph' if graphs else ', eager'})",
            device=f"{device} ({name})", artifact_precision="fp32", executed_precision=precision, threads=None,
            input_name="images", input_shape=tuple(int(d) for d in input_shape),
        )
        self.head, self.resize = head, resize

    def _forward(self) -> list[torch.Tensor]:
        with torch.inference_mode():
            return flat_tensors(self.module(self.static_in))

    def _capture(self) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up on a side stream, as torch.cuda.graphs asks
                self._forward()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.static_out = flat_tensors(self.module(self.static_in))

    def _infer(self) -> list[torch.Tensor]:
        if self.graph is not None:
            self.graph.replay()
            return self.static_out
        return self._forward()

    def outputs(self, x: np.ndarray) -> list[np.ndarray]:
        self.static_in.copy_(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.dtype))
        outs = self._infer()
        return [t.float().cpu().numpy() for t in outs]

    def run_loop(self, x: np.ndarray, requests: int, keep_going) -> tuple[list, float]:
        import time

        self.static_in.copy_(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.dtype))
        torch.cuda.synchronize(self.device)
        latencies, started = [], 0
        t0 = time.perf_counter()
        while keep_going(started, time.perf_counter() - t0):
            started += 1
            begin = time.perf_counter()
            self._infer()
            torch.cuda.synchronize(self.device)
            latencies.append(time.perf_counter() - begin)
        return latencies, time.perf_counter() - t0
