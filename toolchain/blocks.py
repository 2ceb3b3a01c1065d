"""Rewrite Ultralytics ``chunk``/``split`` blocks into prunable form and back.

Why: ``C2f`` (and its subclass ``C3k2``) run ``cv1(x).chunk(2, 1)``. Torch-Pruning cannot map
channel indices through ``chunk`` once the two halves lose different channels, so before
pruning we split ``cv1`` into two convs whose weights are exact copies of its two halves
(:class:`SplitC2f`). After pruning, :func:`restore_stock_blocks` merges them back into a
stock Ultralytics block whenever both halves kept the same width, so plain ``ultralytics``
can load the checkpoint; otherwise the block stays a :class:`SplitC2f`, which is importable
by name from this module (never a class defined in ``__main__``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

# Attributes Ultralytics' parse_model puts on every layer and the model's forward reads.
_LAYER_ATTRS = ("f", "i", "type", "np")


def _conv_slice(conv_block: nn.Module, start: int, stop: int) -> nn.Module:
    """Copy an Ultralytics ``Conv`` (conv + BN + act) keeping output channels [start, stop)."""
    part = copy.deepcopy(conv_block)
    part.act = conv_block.act  # Ultralytics shares one activation instance across layers
    conv, bn = part.conv, part.bn
    conv.weight = nn.Parameter(conv.weight.data[start:stop].clone())
    conv.out_channels = stop - start
    if conv.bias is not None:
        conv.bias = nn.Parameter(conv.bias.data[start:stop].clone())
    bn.weight = nn.Parameter(bn.weight.data[start:stop].clone())
    bn.bias = nn.Parameter(bn.bias.data[start:stop].clone())
    bn.running_mean = bn.running_mean.data[start:stop].clone()
    bn.running_var = bn.running_var.data[start:stop].clone()
    bn.num_features = stop - start
    return part


def _conv_concat(first: nn.Module, second: nn.Module) -> nn.Module:
    """Inverse of :func:`_conv_slice`: one ``Conv`` whose outputs are ``first`` then ``second``."""
    merged = copy.deepcopy(first)
    merged.act = first.act
    conv, bn = merged.conv, merged.bn
    conv.weight = nn.Parameter(torch.cat([first.conv.weight.data, second.conv.weight.data]))
    conv.out_channels = conv.weight.shape[0]
    if conv.bias is not None:
        conv.bias = nn.Parameter(torch.cat([first.conv.bias.data, second.conv.bias.data]))
    for name in ("weight", "bias"):
        setattr(bn, name, nn.Parameter(torch.cat([getattr(first.bn, name).data, getattr(second.bn, name).data])))
    bn.running_mean = torch.cat([first.bn.running_mean, second.bn.running_mean])
    bn.running_var = torch.cat([first.bn.running_var, second.bn.running_var])
    bn.num_features = conv.out_channels
    return merged


class SplitC2f(nn.Module):
    """``C2f``/``C3k2`` with ``cv1`` split into ``cv1a`` and ``cv1b`` (same maths, no chunk).

    Args:
        block: the stock block to convert; its weights are copied, not shared.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        half = block.c
        self.cv1a = _conv_slice(block.cv1, 0, half)
        self.cv1b = _conv_slice(block.cv1, half, 2 * half)
        self.m = block.m
        self.cv2 = block.cv2
        self.stock_class = type(block)  # restored by restore_stock_blocks
        self.stock_attrs = {k: v for k, v in vars(block).items() if not k.startswith("_") and k not in ("training",)}
        for attr in _LAYER_ATTRS:
            if hasattr(block, attr):
                setattr(self, attr, getattr(block, attr))
        self.train(block.training)  # a new Module starts in training mode; BN stats must not move

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1a(x), self.cv1b(x)]
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))

    def to_stock(self) -> nn.Module | None:
        """The equivalent stock block, or None when the two halves have different widths."""
        if self.cv1a.conv.out_channels != self.cv1b.conv.out_channels:
            return None
        block = self.stock_class.__new__(self.stock_class)
        nn.Module.__init__(block)
        for key, value in self.stock_attrs.items():
            setattr(block, key, value)
        block.c = self.cv1a.conv.out_channels
        block.cv1 = _conv_concat(self.cv1a, self.cv1b)  # registration order as in the stock __init__
        block.cv2 = self.cv2
        block.m = self.m
        block.train(self.training)
        return block


def _stock_chunk_types() -> tuple[type, ...]:
    """Ultralytics block classes whose forward chunks ``cv1`` in two equal halves."""
    from ultralytics.nn.modules import block as ub

    return tuple(getattr(ub, name) for name in ("C2f", "C3k2") if hasattr(ub, name))


def _replace_children(module: nn.Module, convert) -> int:
    """Replace children in place where ``convert(child)`` returns a module; count them."""
    count = 0
    for name, child in module.named_children():
        new = convert(child)
        if new is not None:
            setattr(module, name, new)
            count += 1
        else:
            count += _replace_children(child, convert)
    return count


def split_chunk_blocks(model: nn.Module) -> int:
    """Convert every stock C2f-family block under ``model`` into :class:`SplitC2f`; return how many."""
    stock = _stock_chunk_types()
    return _replace_children(model, lambda m: SplitC2f(m) if type(m) in stock else None)


def restore_stock_blocks(model: nn.Module) -> tuple[int, int]:
    """Merge :class:`SplitC2f` blocks back to stock ones where widths allow.

    Returns:
        (restored, kept): blocks turned back into stock Ultralytics classes, and blocks that
        had to stay :class:`SplitC2f` because their halves were pruned to different widths.
    """
    kept = 0

    def convert(child):
        nonlocal kept
        if isinstance(child, SplitC2f):
            stock = child.to_stock()
            if stock is None:
                kept += 1
            return stock
        return None

    restored = _replace_children(model, convert)
    return restored, kept
