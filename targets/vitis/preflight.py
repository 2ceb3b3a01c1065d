"""``edgeprune preflight MODEL --target kv260``: which layers the KV260's DPU runs, before any Docker.

Why: a Vitis AI round trip (quantise, compile, copy to the board) takes many minutes and the
only signal at the end is a subgraph count. Preflight traces the model once on the CPU
(:mod:`targets.vitis.trace`), applies the DPU's documented limits to every executed op
(:mod:`targets.vitis.dpu`), and estimates how many DPU subgraphs the compiler will make:
the connected regions of DPU ops once every CPU op is cut out. ``deploy vitis`` later reads
the compiler's real number; when the two differ, the compiler is right.

For a model marked by ``dpu-rewrite`` the analysed graph is the one the DPU will run (up to
the head's convolutions; the decode runs in the board's post-processing); otherwise it is the
model's own inference graph, decode included.

Sources of the limits (facts only; read 2025):
* AMD UG1414 *Vitis AI User Guide* v3.5, "Currently Supported Operators",
  https://docs.amd.com/r/en-US/ug1414-vitis-ai/Currently-Supported-Operators — for
  DPUCZDX8G_ISA1_B4096 (ZCU102/104; the KV260 runs the same B4096 ISA1 DPU):
  channel_parallel 16, bank_depth 2048; conv2d kernel w, h in [1, 16], stride in [1, 8],
  padding <= (kernel - 1) * dilation, kernel_w * kernel_h * ceil(in_channels / 16) <= bank_depth,
  in/out channels <= 256 * channel_parallel, dilation * in_channels <= 256 * channel_parallel;
  activations ReLU, LeakyReLU, ReLU6, Hard-Swish, Hard-Sigmoid; depthwise-conv2d kernel and
  stride in [1, 256] with ReLU/ReLU6 only.
* UG1414 v2.0, "Operators Supported by PyTorch",
  https://docs.amd.com/r/2.0-English/ug1414-vitis-ai/Operators-Supported-by-PyTorch —
  groups == 1 maps to the convolution engine, groups == input channels to depthwise, any
  other grouping to the CPU; activations are fused into the adjacent convolution or add.
* PG338 *DPUCZDX8G Product Guide*, https://docs.amd.com/r/en-US/pg338-dpu — B4096 is
  8 pixels x 16 input x 16 output channels in parallel; max/average pooling, elementwise
  sum and multiply, concat. We could not read the ISA1 pooling row of UG1414 v3.5; preflight
  uses kernel and stride in [1, 8] (the pooling rows of the DPU product guides, e.g. PG367),
  which may be stricter than the KV260.
* Xilinx/Vitis-AI issue #317 (https://github.com/Xilinx/Vitis-AI/issues/317): the compiler
  asserts "The negative slope for LeakyRelu must be 0.1015625" (26/256); issue #1420 shows the
  TensorFlow quantiser rounding 0.1 to 26/256 "to simulate DPU".
* Issue #1245: on DPUCZDX8G, Hard-Swish after an elementwise op is assigned to the CPU (only
  its fusion into a convolution runs on the DPU). Issue #1161: depthwise + LeakyReLU is not a
  DPU pattern on DPUCZDX8G_ISA1_B4096. Issue #1024: Sigmoid runs on the CPU.
* The vai_q_pytorch README (Xilinx/Vitis-AI, src/vai_quantizer/vai_q_pytorch/README.md):
  ``pytorch_nndct.apis.Inspector(target)`` gives the authoritative per-op assignment inside
  the Vitis AI Docker image; preflight is the quick approximation outside it.

Assumptions (not from the documents): a channel split (C2f's ``chunk``) is a DPU op,
nearest upsampling by an integer factor in [1, 8] is a DPU op, and a flatten feeding only a
fully connected layer folds into it (UG1414 v2.0 maps ``Linear``/``matmul`` to the convolution
engine and adaptive pooling to the pooling engine); preflight counts subgraphs
without XIR's convexity rule, so the compiler can only report more, never fewer, when a
DPU region reaches itself through a CPU op.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from targets.vitis.dpu import BOARDS, CPU, DPU, DPUArch, classify
from targets.vitis.dpu_rewrite import has_host_decode
from targets.vitis.graph import dpu_graph
from targets.vitis.trace import GRAPH_INPUT, OpGraph, trace_ops
from toolchain.core.errors import EdgepruneError
from toolchain.models.sources import prepare

SOURCES = (
    "https://docs.amd.com/r/en-US/ug1414-vitis-ai/Currently-Supported-Operators",
    "https://docs.amd.com/r/2.0-English/ug1414-vitis-ai/Operators-Supported-by-PyTorch",
    "https://docs.amd.com/r/en-US/pg338-dpu",
    "https://github.com/Xilinx/Vitis-AI/issues/317",
    "https://github.com/Xilinx/Vitis-AI/issues/1245",
)
HOST_POSTPROCESS = ("DFL softmax and expectation", "anchor grid and box decode", "class sigmoid", "NMS")
DARKNET_POSTPROCESS = ("[yolo] decode: sigmoid, anchors, scale_x_y", "objectness x class scores", "NMS")
REPO_POSTPROCESS = ("sigmoid", "anchor grid and box decode (2 sigmoid - 0.5 + cell; (2 sigmoid)^2 anchor)",
                    "objectness x class scores", "NMS")


@dataclass(frozen=True)
class LayerRow:
    """One executed op and where the DPU compiler is expected to put it."""

    index: int
    layer: str
    module_type: str
    op: str
    detail: str
    device: str
    reason: str
    fix: str
    region: str  # "backbone/neck" or "head"


@dataclass
class PreflightReport:
    """Per-layer verdicts and the summary ``preflight`` prints."""

    model: str
    target: str
    dpu: str
    imgsz: int
    graph: str
    rows: list[LayerRow]
    expected_dpu_subgraphs: int
    host_postprocess: list[str] = field(default_factory=list)
    sources: tuple[str, ...] = SOURCES

    @property
    def fallbacks(self) -> list[LayerRow]:
        return [r for r in self.rows if r.device == CPU]

    def fallback_count(self, region: str | None = None) -> int:
        return sum(1 for r in self.fallbacks if region is None or r.region == region)

    @property
    def fixes(self) -> list[str]:
        return list(dict.fromkeys(r.fix for r in self.fallbacks if r.fix))

    def to_json(self) -> dict:
        data = asdict(self)
        data["summary"] = {
            "ops": len(self.rows),
            "dpu_ops": sum(1 for r in self.rows if r.device == DPU),
            "cpu_fallbacks": self.fallback_count(),
            "cpu_fallbacks_backbone_neck": self.fallback_count("backbone/neck"),
            "cpu_fallbacks_head": self.fallback_count("head"),
            "cpu_fallbacks_by_op": dict(Counter(r.op for r in self.fallbacks)),
            "expected_dpu_subgraphs": self.expected_dpu_subgraphs,
            "fixes": self.fixes,
        }
        return data


def count_dpu_subgraphs(graph: OpGraph, devices: dict[int, str]) -> int:
    """DPU subgraphs as a partitioner must cut them: connected DPU ops that no CPU op lies between.

    Connectivity alone undercounts: in YOLOv7-tiny's SPP the 9x9 and 13x13 pools run on the CPU
    beside a 5x5 pool on the DPU, so the DPU ops before and after them stay connected through the
    5x5 branch, yet the concat after them needs the CPU's results, so the DPU's work splits in two.
    Each op gets a stage, the number of CPU -> DPU hand-overs on the way to it; DPU ops are joined
    only along DPU -> DPU edges within one stage.
    """
    stage: dict[int, int] = {}
    for node in graph.nodes:  # execution order: inputs come first
        here = 0
        for ref in node.inputs:
            if ref.node == GRAPH_INPUT or ref.node not in stage:
                continue
            handed_over = devices.get(ref.node) != DPU and devices.get(node.index) == DPU
            here = max(here, stage[ref.node] + handed_over)
        stage[node.index] = here
    parent = {i: i for i, d in devices.items() if d == DPU}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for node in graph.nodes:
        if node.index not in parent:
            continue
        for ref in node.inputs:
            if ref.node != GRAPH_INPUT and ref.node in parent and stage[ref.node] == stage[node.index]:
                parent[find(ref.node)] = find(node.index)
    return len({find(i) for i in parent})


def analyse(graph: OpGraph, arch: DPUArch, head_scopes: tuple[str, ...] = ()) -> tuple[list[LayerRow], int]:
    """Rows for every op of ``graph`` and the expected DPU subgraph count.

    ``head_scopes``: module paths whose ops count as the detection head (the rest is backbone/neck).
    """
    rows, devices = [], {}
    for node in graph.nodes:
        verdict = classify(node, graph, arch)
        in_head = any(node.module == s or node.module.startswith(f"{s}.") for s in head_scopes)
        rows.append(LayerRow(node.index, node.module or "(top)", node.module_type, node.op, verdict.detail,
                             verdict.device, verdict.reason, verdict.fix, "head" if in_head else "backbone/neck"))
        devices[node.index] = verdict.device
    return rows, count_dpu_subgraphs(graph, devices)


def preflight(model_path: str | Path, target: str = "kv260", imgsz: int | None = None,
              input_shape: tuple[int, ...] | None = None, weights: str | None = None) -> PreflightReport:
    """Trace ``model_path`` (any model source) at ``imgsz`` and judge every op against ``target``'s DPU.

    A Darknet cfg is judged as ``deploy vitis`` builds it: up to its [yolo] layers, with the
    DPU's leaky slope (:class:`targets.vitis.graph.DarknetDPUGraph`); so is a YOLOv5/YOLOv7
    repository checkpoint, up to its prediction convs (:class:`targets.vitis.graph.RepoDPUGraph`).

    Raises:
        EdgepruneError: unknown target; model errors from the model source.
    """

    if target not in BOARDS:
        raise EdgepruneError(f"unknown --target {target!r}; known targets: {', '.join(BOARDS)}")
    arch = BOARDS[target]
    source = prepare(model_path, imgsz, input_shape, weights=weights)
    if (source.head or {}).get("format", "").startswith("darknet"):  # Darknet [yolo] heads: decoded on the board
        module = dpu_graph(source)
        rows, subgraphs = analyse(trace_ops(module, source.example), arch, module.head_scopes)
        return PreflightReport(str(model_path), target, arch.name, source.imgsz,
                               "the Darknet model up to its [yolo] layers, as deploy vitis builds it "
                               + "; ".join(["(decode on the board's CPU)"] + module.adaptations), rows, subgraphs,
                               list(DARKNET_POSTPROCESS))
    if (source.head or {}).get("format") == "yolo-rows":  # repository heads: always cut at the prediction convs
        module = dpu_graph(source)
        rows, subgraphs = analyse(trace_ops(module, source.example), arch, module.head_scopes)
        return PreflightReport(str(model_path), target, arch.name, source.imgsz,
                               "; ".join(["the repository model up to its prediction convs, as deploy vitis builds it"]
                                         + module.adaptations), rows, subgraphs, list(REPO_POSTPROCESS))
    host_decode = source.task != "module" and has_host_decode(source.module)
    if host_decode:
        module = dpu_graph(source)
        description, scopes = "up to the head convolutions (decode on the board's CPU)", module.head_scopes
    else:
        module, scopes = source.module, (source.head_scope,) if source.head_scope else ()
        description = "the model's inference graph" + (", head decode included" if source.task != "module" else "")
    rows, subgraphs = analyse(trace_ops(module, source.example), arch, scopes)
    return PreflightReport(str(model_path), target, arch.name, source.imgsz, description, rows, subgraphs,
                           list(HOST_POSTPROCESS) if host_decode else [])
