"""Which ops the Kria KV260's DPU (DPUCZDX8G_ISA1_B4096) runs, and why not when it does not.

One handler per op type in :data:`RULES` (like ONNX Runtime's quantiser registry); an op with
no handler falls back to the CPU. The numbers are the DPU's documented limits; the sources
are listed in :mod:`targets.vitis.preflight`. The compiler has the last word: ``vai_c_xir``'s
"DPU subgraph number" is what ``deploy vitis`` checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from targets.vitis.trace import GRAPH_INPUT, OpGraph, OpNode

DPU = "DPU"
CPU = "CPU"
LEAKY_SLOPE = 26 / 256  # the only LeakyReLU slope the DPU implements (0.1015625)

FIX_REWRITE = "run `edgeprune dpu-rewrite` (SiLU -> Hardswish or LeakyReLU(26/256)), then fine-tune"
FIX_HOST_DECODE = ("decode on the board's CPU: `edgeprune dpu-rewrite` marks the head so its decode runs in "
                   "run_kv260.py (`deploy vitis` always cuts the graph at the head convolutions)")


@dataclass(frozen=True)
class DPUArch:
    """Intrinsic parameters of one DPU configuration (UG1414 "Currently Supported Operators")."""

    name: str
    channel_parallel: int
    bank_depth: int
    conv_kernel: tuple[int, int] = (1, 16)
    conv_stride: tuple[int, int] = (1, 8)
    dw_kernel: tuple[int, int] = (1, 256)
    dw_stride: tuple[int, int] = (1, 256)
    pool_kernel: tuple[int, int] = (1, 8)
    pool_stride: tuple[int, int] = (1, 8)
    resize_scale: tuple[int, int] = (1, 8)
    dw_acts: frozenset = frozenset({"relu", "relu6"})
    arch_json: str = ""  # the board's arch.json inside the Vitis AI image (vai_c_xir -a)

    @property
    def max_channels(self) -> int:
        return 256 * self.channel_parallel


KV260 = DPUArch("DPUCZDX8G_ISA1_B4096", channel_parallel=16, bank_depth=2048,
                arch_json="/opt/vitis_ai/compiler/arch/DPUCZDX8G/KV260/arch.json")
BOARDS = {"kv260": KV260}


@dataclass(frozen=True)
class Verdict:
    """Where an op runs: ``DPU`` or ``CPU``, with the reason and the fix when it is the CPU."""

    device: str
    detail: str = ""
    reason: str = ""
    fix: str = ""


Rule = Callable[[OpNode, OpGraph, DPUArch], Verdict]
RULES: dict[str, Rule] = {}


def rule(*ops: str):
    def register(func: Rule) -> Rule:
        for op in ops:
            RULES[op] = func
        return func
    return register


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def _within(value: tuple[int, int], bounds: tuple[int, int]) -> bool:
    return all(bounds[0] <= v <= bounds[1] for v in value)


def _producer(node: OpNode, graph: OpGraph) -> OpNode | None:
    ref = node.inputs[0] if node.inputs else None
    return None if ref is None or ref.node == GRAPH_INPUT else graph.nodes[ref.node]


def _cpu(detail: str, reason: str, fix: str) -> Verdict:
    return Verdict(CPU, detail, reason, fix)


HEAD_TYPES = ("Detect", "DFL", "Pose", "Segment", "OBB")


def _fix(node: OpNode, elsewhere: str) -> str:
    """Ops of a YOLO head's decode move to the board's post-processing; others get ``elsewhere``."""
    return FIX_HOST_DECODE if node.module_type in HEAD_TYPES else elsewhere


@rule("conv2d")
def _conv(node: OpNode, graph: OpGraph, arch: DPUArch) -> Verdict:
    weight = node.arg(1, "weight")
    oc, icg, kh, kw = (int(d) for d in weight.shape)
    groups = int(node.arg(6, "groups", 1))
    ic = icg * groups
    stride, dilation = _pair(node.arg(3, "stride", 1)), _pair(node.arg(5, "dilation", 1))
    padding = node.arg(4, "padding", 0)
    detail = f"k{kh}x{kw} s{stride[0]} {ic}->{oc}" + (f" g{groups}" if groups > 1 else "")
    if isinstance(padding, str):
        return _cpu(detail, f"padding={padding!r} is not an explicit padding", "use integer padding")
    pad = _pair(padding)
    depthwise = _is_depthwise(node)
    if groups > 1 and not depthwise:
        return _cpu(detail, f"grouped convolution (groups={groups}, neither 1 nor the {ic} input channels)",
                    "use groups=1 or a depthwise convolution")
    kernel_bounds = arch.dw_kernel if depthwise else arch.conv_kernel
    stride_bounds = arch.dw_stride if depthwise else arch.conv_stride
    kind = "depthwise kernel" if depthwise else "kernel"
    if not _within((kh, kw), kernel_bounds):
        return _cpu(detail, f"{kind} {kh}x{kw} outside [{kernel_bounds[0]}, {kernel_bounds[1]}]",
                    f"use kernels of at most {kernel_bounds[1]}x{kernel_bounds[1]}")
    if not _within(stride, stride_bounds):
        return _cpu(detail, f"stride {stride[0]}x{stride[1]} outside [{stride_bounds[0]}, {stride_bounds[1]}]",
                    f"use stride at most {stride_bounds[1]} (add a pooling layer for larger steps)")
    if pad[0] > (kh - 1) * dilation[0] or pad[1] > (kw - 1) * dilation[1]:
        return _cpu(detail, f"padding {pad} larger than (kernel - 1) * dilation", "pad at most (kernel - 1) * dilation")
    if dilation != (1, 1) and (dilation[0] * ic > arch.max_channels or stride != (1, 1)):
        return _cpu(detail, f"dilation {dilation[0]} needs stride 1 and dilation * input_channels <= "
                    f"{arch.max_channels}", "use stride 1 with dilation, or fewer input channels")
    if max(ic, oc) > arch.max_channels:
        return _cpu(detail, f"{max(ic, oc)} channels exceed 256 * channel_parallel = {arch.max_channels}",
                    f"prune to at most {arch.max_channels} channels")
    in_size = kh * kw * math.ceil(ic / arch.channel_parallel)
    if in_size > arch.bank_depth:
        return _cpu(detail, f"kernel_w * kernel_h * ceil(input_channels / {arch.channel_parallel}) = {in_size} exceeds "
                    f"bank_depth {arch.bank_depth}", "prune input channels or use a smaller kernel")
    return Verdict(DPU, detail + (" depthwise" if depthwise else ""))


def _is_depthwise(conv: OpNode) -> bool:
    groups = int(conv.arg(6, "groups", 1))
    return groups > 1 and int(conv.arg(1, "weight").shape[1]) == 1  # one input channel per group


def _activation(name: str, allowed_after: frozenset, node: OpNode, graph: OpGraph, arch: DPUArch,
                detail: str = "") -> Verdict:
    producer = _producer(node, graph)  # the op the activation would fuse into
    if producer is None or producer.op not in allowed_after:
        after = "the input" if producer is None else producer.op
        fusers = ", ".join(sorted(allowed_after))
        return _cpu(detail, f"{name} after {after} (the DPU applies it only fused into {fusers})",
                    "place the activation directly after a convolution")
    if producer.op == "conv2d" and _is_depthwise(producer) and name not in arch.dw_acts:
        return _cpu(detail, f"{name} after a depthwise convolution (the DPU supports only ReLU/ReLU6 there)",
                    "use ReLU or ReLU6 after depthwise convolutions")
    return Verdict(DPU, detail)


@rule("relu", "leaky_relu", "hardtanh")
def _relu_family(node: OpNode, graph: OpGraph, arch: DPUArch) -> Verdict:
    if node.op == "hardtanh":
        lo, hi = float(node.arg(1, "min_val", -1.0)), float(node.arg(2, "max_val", 1.0))
        if (lo, hi) != (0.0, 6.0):
            return _cpu(f"[{lo}, {hi}]", "Hardtanh other than ReLU6 (0, 6)", "use ReLU6")
        return _activation("relu6", frozenset({"conv2d", "add"}), node, graph, arch, "relu6")
    if node.op == "leaky_relu":
        slope = float(node.arg(1, "negative_slope", 0.01))
        detail = f"alpha={slope:.7g}"
        if abs(slope - LEAKY_SLOPE) > 1e-9:
            return _cpu(detail, f"LeakyReLU alpha {slope:.7g} (the DPU implements only 26/256 = 0.1015625)",
                        "set negative_slope=26/256, or run `edgeprune dpu-rewrite --act leaky`")
        return _activation("leaky_relu", frozenset({"conv2d", "add"}), node, graph, arch, detail)
    return _activation("relu", frozenset({"conv2d", "add"}), node, graph, arch)


@rule("hardswish", "hardsigmoid")
def _hard(node: OpNode, graph: OpGraph, arch: DPUArch) -> Verdict:
    # Vitis-AI issue #1245: on DPUCZDX8G, Hard-Swish after an eltwise op is assigned to the CPU.
    return _activation(node.op, frozenset({"conv2d"}), node, graph, arch)


@rule("silu", "sigmoid", "mish", "gelu", "tanh", "softmax", "log_softmax", "exp", "elu", "selu", "softplus")
def _no_dpu_activation(node: OpNode, graph: OpGraph, arch: DPUArch) -> Verdict:
    if node.op == "silu":
        return _cpu("", "SiLU is not a DPU activation (ReLU, ReLU6, LeakyReLU(26/256), Hard-Swish, Hard-Sigmoid)",
                    FIX_REWRITE)
    where = " in the YOLO head decode" if node.module_type in HEAD_TYPES else ""
    return _cpu("", f"{node.op}{where} has no DPU implementation",
                _fix(node, "replace it by a DPU activation and fine-tune"))


def _pool(node: OpNode, graph: OpGraph, arch: DPUArch) -> Verdict:
    kernel = _pair(node.arg(1, "kernel_size"))
    stride = _pair(node.arg(2, "stride") or kernel)
    pad = _pair(node.arg(3, "padding", 0))
    detail = f"k{kernel[0]} s{stride[0]} p{pad[0]}"
    if node.op == "max_pool2d" and _pair(node.arg(4, "dilation", 1)) != (1, 1):
        return _cpu(detail, "dilated pooling", "use dilation 1")
    if not _within(kernel, arch.pool_kernel):
        low, high = arch.pool_kernel
        return _cpu(detail, f"pool kernel {kernel[0]}x{kernel[1]} outside [{low}, {high}]",
                    f"use pool kernels of at most {arch.pool_kernel[1]} (chain smaller pools)")
    if not _within(stride, arch.pool_stride):
        return _cpu(detail, f"pool stride {stride[0]} outside [{arch.pool_stride[0]}, {arch.pool_stride[1]}]",
                    f"use pool strides of at most {arch.pool_stride[1]}")
    if pad[0] > kernel[0] - 1 or pad[1] > kernel[1] - 1:
        return _cpu(detail, "pool padding larger than kernel - 1", "pad at most kernel - 1")
    if node.op == "avg_pool2d" and kernel[0] != kernel[1]:
        return _cpu(detail, "non-square average pooling", "use a square kernel")
    return Verdict(DPU, detail)


rule("max_pool2d", "avg_pool2d")(_pool)


@rule("adaptive_avg_pool2d", "adaptive_max_pool2d")
def _adaptive_pool(node: OpNode, graph: OpGraph, arch: DPUArch) -> Verdict:
    (ih, iw), (oh, ow) = graph.shape_of(node.inputs[0])[-2:], node.out_shapes[0][-2:]
    if (oh, ow) == (1, 1):
        return Verdict(DPU, "global pooling")
    if ih % oh or iw % ow:
        return _cpu(f"{ih}x{iw} -> {oh}x{ow}", "adaptive pooling to a size that does not divide the input",
                    "pool to 1x1 or to a divisor of the input size")
    kernel = (ih // oh, iw // ow)
    if not _within(kernel, arch.pool_kernel):
        return _cpu(f"{ih}x{iw} -> {oh}x{ow}", f"equivalent pool kernel {kernel[0]}x{kernel[1]} outside "
                    f"[{arch.pool_kernel[0]}, {arch.pool_kernel[1]}]", "pool to 1x1 or use smaller windows")
    return Verdict(DPU, f"as pool k{kernel[0]}")


@rule("linear")
def _linear(node: OpNode, graph: OpGraph, arch: DPUArch) -> Verdict:
    # UG1414 (PyTorch operators): a fully connected layer is compiled as a convolution.
    out_features, in_features = (int(d) for d in node.arg(1, "weight").shape)
    detail = f"{in_features}->{out_features}"
    if max(in_features, out_features) > arch.max_channels:
        return _cpu(detail, f"{max(in_features, out_features)} features exceed 256 * channel_parallel = "
                    f"{arch.max_channels}", f"use at most {arch.max_channels} features")
    return Verdict(DPU, detail + " as conv")


@rule("flatten", "view", "reshape")
def _reshape(node: OpNode, graph: OpGraph, arch: DPUArch) -> Verdict:
    consumers = [n for n in graph.nodes if any(r.node == node.index for r in n.inputs)]
    if consumers and all(n.op == "linear" for n in consumers) and len(node.out_shapes[0]) == 2:
        return Verdict(DPU, "folded into the fully connected layer")  # assumption, see targets.vitis.preflight
    return _cpu("", f"{node.op} has no DPU implementation", _fix(node, "move it out of the network "
                                                                   "(pre/post-processing)"))


@rule("resize")
def _resize(node: OpNode, graph: OpGraph, arch: DPUArch) -> Verdict:
    mode = node.arg(3, "mode", "nearest")
    in_shape, out_shape = graph.shape_of(node.inputs[0]), node.out_shapes[0]
    scale = (out_shape[-2] / in_shape[-2], out_shape[-1] / in_shape[-1])
    detail = f"{mode} x{scale[0]:g}"
    if mode != "nearest":
        return _cpu(detail, f"{mode} resize (preflight counts only nearest as a DPU op)", "use nearest upsampling")
    if any(s != int(s) for s in scale) or not _within((int(scale[0]), int(scale[1])), arch.resize_scale):
        return _cpu(detail, f"scale {scale} is not an integer in [{arch.resize_scale[0]}, {arch.resize_scale[1]}]",
                    "upsample by an integer factor")
    return Verdict(DPU, detail)


@rule("cat")
def _cat(node: OpNode, graph: OpGraph, arch: DPUArch) -> Verdict:
    dim = int(node.arg(1, "dim", 0))
    rank = len(node.out_shapes[0])
    if dim % rank != 1 or rank != 4:
        return _cpu(f"dim={dim}", f"concat along dim {dim} of a {rank}-d tensor (the DPU concatenates channels)",
                    _fix(node, "concatenate along channels"))
    return Verdict(DPU, f"{len(node.inputs)} inputs")


@rule("chunk", "split", "getitem")
def _slice(node: OpNode, graph: OpGraph, arch: DPUArch) -> Verdict:
    rank = len(graph.shape_of(node.inputs[0]))
    dim = int(node.arg(2, "dim", 0)) if node.op in ("chunk", "split") else None
    if node.op in ("chunk", "split") and rank == 4 and dim % 4 == 1:
        return Verdict(DPU, f"channel {node.op}")
    return _cpu("", f"{node.op} other than a channel split of a 4-d tensor",
                _fix(node, "keep tensor slicing out of the DPU graph"))


@rule("add", "mul")
def _eltwise(node: OpNode, graph: OpGraph, arch: DPUArch) -> Verdict:
    name = "sum" if node.op == "add" else "multiply"
    shapes = {graph.shape_of(r) for r in node.inputs}
    if len(node.inputs) != 2 or len(shapes) != 1 or len(next(iter(shapes))) != 4:
        operands = " and ".join(str(list(graph.shape_of(r))) for r in node.inputs) or "a constant"
        if len(node.inputs) == 1:
            operands += " and a constant"
        return _cpu("", f"{node.op} of {operands} (the DPU has elementwise {name} of two equal-shape 4-d tensors "
                        "only)", _fix(node, "fold the constant into the preceding convolution"))
    if next(iter(shapes))[1] > arch.max_channels:
        return _cpu("", f"elementwise {name} over more than {arch.max_channels} channels", "prune channels")
    return Verdict(DPU, f"eltwise {name}")


def classify(node: OpNode, graph: OpGraph, arch: DPUArch = KV260) -> Verdict:
    """Where ``node`` runs on ``arch``; ops without a rule (view, permute, sub, div...) run on the CPU."""
    handler = RULES.get(node.op)
    if handler is None:
        return _cpu("", f"{node.op} has no DPU implementation",
                    _fix(node, "move it out of the network (pre/post-processing)"))
    return handler(node, graph, arch)
