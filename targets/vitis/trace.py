"""Record the operator graph a model actually executes, with the module each op runs in.

Why our own tracer: ``torch.fx`` cannot trace Ultralytics models (``list(x.chunk(2, 1))`` in
C2f iterates a proxy), and ``torch.jit`` graphs lose the functional ops' module names. A
:class:`~torch.overrides.TorchFunctionMode` sees every torch call once (``F.conv2d``,
``F.silu``, ``torch.cat``, ``Tensor.sigmoid`` ...) while forward hooks say which module is
running; following tensor identities gives the data flow. Calls whose inputs are all
constants (anchor grids, weights) are not part of the graph and are not recorded.

Both preflight (which ops the DPU runs) and the Vitis AI workspace (which ops the quantizer
must rebuild) read the same :class:`OpGraph`, so they can never disagree about the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

GRAPH_INPUT = -1

# torch call name -> normalised op name; anything else keeps its own name ("softmax", "view"...)
_ALIASES = {
    "__add__": "add", "__radd__": "add", "__iadd__": "add", "add_": "add",
    "__mul__": "mul", "__rmul__": "mul", "__imul__": "mul",
    "__sub__": "sub", "__rsub__": "sub", "rsub": "sub",
    "__truediv__": "div", "__rtruediv__": "div", "true_divide": "div",
    "__getitem__": "getitem", "interpolate": "resize", "upsample": "resize",
    "relu_": "relu", "silu_": "silu", "leaky_relu_": "leaky_relu", "hardswish_": "hardswish",
}


@dataclass(frozen=True)
class Ref:
    """An input that another op produced: output ``out`` of node ``node`` (``GRAPH_INPUT`` = the model input)."""

    node: int
    out: int = 0


@dataclass(frozen=True)
class OpNode:
    """One executed op.

    Attributes:
        index: position in execution order.
        op: normalised op name (``conv2d``, ``silu``, ``cat``, ``add``, ``resize``, ``chunk``...).
        module: dotted path of the innermost module running it (``model.2.m.0.cv1.conv``), ``""`` at top level.
        module_type: class name of that module.
        inputs: the graph tensors it reads, in argument order.
        args, kwargs: the call's arguments with graph tensors replaced by :class:`Ref` (constants stay tensors).
        out_shapes: shape of each tensor output.
    """

    index: int
    op: str
    module: str
    module_type: str
    inputs: tuple[Ref, ...]
    args: tuple
    kwargs: dict
    out_shapes: tuple[tuple[int, ...], ...]

    def arg(self, position: int, name: str, default: Any = None) -> Any:
        """The argument given at ``position`` or as keyword ``name``."""
        if len(self.args) > position:
            return self.args[position]
        return self.kwargs.get(name, default)


@dataclass
class OpGraph:
    """The executed ops in order, the input shape and which refs are the model's outputs."""

    nodes: list[OpNode]
    input_shape: tuple[int, ...]
    outputs: list[Ref] = field(default_factory=list)

    def shape_of(self, ref: Ref) -> tuple[int, ...]:
        return self.input_shape if ref.node == GRAPH_INPUT else self.nodes[ref.node].out_shapes[ref.out]

    def consumers(self) -> dict[int, list[int]]:
        """node index -> indices of the nodes reading it."""
        out: dict[int, list[int]] = {n.index: [] for n in self.nodes}
        for node in self.nodes:
            for ref in node.inputs:
                if ref.node != GRAPH_INPUT:
                    out[ref.node].append(node.index)
        return out


def _op_name(func) -> str:
    name = getattr(func, "__name__", str(func))
    return _ALIASES.get(name, name)


class _Recorder(TorchFunctionMode):
    def __init__(self, stack: list[tuple[str, str]]):
        super().__init__()
        self.stack = stack
        self.nodes: list[OpNode] = []
        self.refs: dict[int, Ref] = {}
        self.keep: list[torch.Tensor] = []  # keeps recorded tensors alive so their ids stay unique

    def register(self, tensor: torch.Tensor, ref: Ref) -> None:
        self.refs[id(tensor)] = ref
        self.keep.append(tensor)

    def _swap(self, value, found: list[Ref]):
        if isinstance(value, torch.Tensor) and id(value) in self.refs:
            ref = self.refs[id(value)]
            found.append(ref)
            return ref
        if isinstance(value, (list, tuple)):
            return type(value)(self._swap(v, found) for v in value)
        return value

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        found: list[Ref] = []
        s_args = self._swap(tuple(args), found)
        s_kwargs = {k: self._swap(v, found) for k, v in kwargs.items()}
        outs = result if isinstance(result, (tuple, list)) else (result,)
        if not found or not outs or not all(isinstance(o, torch.Tensor) for o in outs):
            return result  # constant arithmetic, shape queries: not part of the graph
        module, module_type = self.stack[-1] if self.stack else ("", "")
        index = len(self.nodes)
        self.nodes.append(OpNode(index, _op_name(func), module, module_type, tuple(found), s_args, s_kwargs,
                                 tuple(tuple(o.shape) for o in outs)))
        for i, o in enumerate(outs):
            self.register(o, Ref(index, i))
        return result


def trace_ops(model: nn.Module, example: torch.Tensor) -> OpGraph:
    """Run ``model(example)`` once and return the ops it executed.

    The model's output (a tensor, or a tuple/list of tensors) becomes :attr:`OpGraph.outputs`.
    """
    stack: list[tuple[str, str]] = []
    handles = []
    for name, module in model.named_modules():
        def push(mod, inputs, _name=name):
            stack.append((_name, type(mod).__name__))

        def pop(mod, inputs, output):
            stack.pop()

        handles.append(module.register_forward_pre_hook(push))
        handles.append(module.register_forward_hook(pop))
    recorder = _Recorder(stack)
    x = example.clone()
    recorder.register(x, Ref(GRAPH_INPUT))
    try:
        with torch.inference_mode(), recorder:
            result = model(x)
    finally:
        for handle in handles:
            handle.remove()
    outs = result if isinstance(result, (tuple, list)) else (result,)
    outputs = [recorder.refs[id(o)] for o in outs if isinstance(o, torch.Tensor) and id(o) in recorder.refs]
    return OpGraph(recorder.nodes, tuple(example.shape), outputs)
