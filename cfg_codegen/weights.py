"""Darknet ``.weights`` files: read, write, and the exact float layout.

Layout (Darknet's ``load_weights``/``save_weights``): a header of three int32 (major, minor,
revision), then ``seen`` (images trained on) as int64 when ``major * 10 + minor >= 2`` and as
int32 before that; then, for every [convolutional] layer in cfg order, float32 arrays:
* with ``batch_normalize=1``: biases (BN beta), scales (BN gamma), rolling_mean, rolling_variance,
  then the kernel;
* without: biases, then the kernel.

The kernel is ``filters x (in_channels / groups) x size x size``, the same order as PyTorch's
``Conv2d.weight``. No other layer we build has parameters. We refuse files whose size does not
match the cfg exactly (Darknet silently reads a short file and ignores extra bytes), and we keep
the header, so read -> write is byte-identical.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from cfg_codegen.errors import WeightsError
from cfg_codegen.layers import Convolutional, Network
from cfg_codegen.shapes import infer_shapes
from toolchain.core.fileio import atomic_output

FLOAT = np.dtype("<f4")


@dataclass(frozen=True)
class WeightsHeader:
    """Version and ``seen`` counter; 0.2.5 is what current Darknet writes."""

    major: int = 0
    minor: int = 2
    revision: int = 5
    seen: int = 0

    @property
    def seen_is_int64(self) -> bool:
        return self.major * 10 + self.minor >= 2

    @property
    def nbytes(self) -> int:
        return 12 + (8 if self.seen_is_int64 else 4)

    def to_bytes(self) -> bytes:
        return struct.pack("<3i", self.major, self.minor, self.revision) + struct.pack(
            "<Q" if self.seen_is_int64 else "<I", self.seen)

    @classmethod
    def from_bytes(cls, data: bytes, path: str) -> "WeightsHeader":
        if len(data) < 12:
            raise WeightsError(f"{path}: {len(data)} bytes is too short for a Darknet header (at least 16 bytes)")
        major, minor, revision = struct.unpack_from("<3i", data)
        header = cls(major, minor, revision, 0)
        if len(data) < header.nbytes:
            raise WeightsError(f"{path}: {len(data)} bytes is too short for a version {major}.{minor}.{revision} "
                               f"header ({header.nbytes} bytes)")
        (seen,) = struct.unpack_from("<Q" if header.seen_is_int64 else "<I", data, 12)
        return cls(major, minor, revision, seen)


@dataclass(frozen=True)
class ConvWeights:
    """Parameters of one [convolutional] layer, as float32 arrays in Darknet's meaning."""

    biases: np.ndarray  # (filters,): BN beta when batch_normalize, else the conv bias
    weights: np.ndarray  # (filters, in_channels // groups, size, size)
    scales: np.ndarray | None = None  # BN gamma
    rolling_mean: np.ndarray | None = None
    rolling_variance: np.ndarray | None = None

    @property
    def batch_normalize(self) -> bool:
        return self.scales is not None

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays in file order."""
        if self.batch_normalize:
            return self.biases, self.scales, self.rolling_mean, self.rolling_variance, self.weights
        return self.biases, self.weights


@dataclass(frozen=True)
class DarknetWeights:
    """All parameters of a network: header plus one :class:`ConvWeights` per conv layer index."""

    header: WeightsHeader
    convs: Mapping[int, ConvWeights] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "convs", MappingProxyType(dict(self.convs)))


def kernel_shapes(network: Network) -> dict[int, tuple[int, int, int, int]]:
    """Conv layer index -> kernel shape ``(filters, in_channels // groups, size, size)``."""
    shapes = infer_shapes(network)
    out = {}
    for layer in network.conv_layers:
        c_in = network.net.channels if layer.index == 0 else shapes[layer.index - 1].channels
        out[layer.index] = (layer.filters, c_in // layer.groups, layer.size, layer.size)
    return out


def expected_floats(network: Network) -> int:
    """How many floats a .weights file for ``network`` holds after the header."""
    kshapes = kernel_shapes(network)
    return sum(_conv_float_count(layer, kshapes[layer.index]) for layer in network.conv_layers)


def _conv_float_count(layer: Convolutional, kshape: tuple[int, ...]) -> int:
    return layer.filters * (4 if layer.batch_normalize else 1) + int(np.prod(kshape))


def read_weights(path: str | os.PathLike, network: Network) -> DarknetWeights:
    """Read a .weights file laid out for ``network``.

    Raises:
        WeightsError: unreadable file, bad header, or a float count that differs from the cfg's
            (the message gives both numbers).
    """
    try:
        data = open(path, "rb").read()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read the weights ({exc.strerror or exc})") from None
    return weights_from_bytes(data, network, str(path))


def weights_from_bytes(data: bytes, network: Network, path: str = "<weights>") -> DarknetWeights:
    header = WeightsHeader.from_bytes(data, path)
    body = len(data) - header.nbytes
    expected = expected_floats(network)
    if body % 4:
        raise WeightsError(f"{path}: {body} bytes after the header is not a whole number of float32 values; "
                           f"{network.path} expects {expected} floats ({expected * 4} bytes)")
    found = body // 4
    if found != expected:
        raise WeightsError(f"{path}: {network.path} expects {expected} floats after the "
                           f"{header.nbytes}-byte header, the file has {found}"
                           + (" (is it for another cfg, or a truncated backbone file?)" if found < expected else ""))
    floats = np.frombuffer(data, dtype=FLOAT, offset=header.nbytes)
    convs: dict[int, ConvWeights] = {}
    pos = 0

    def take(n: int, shape=None) -> np.ndarray:
        nonlocal pos
        arr = floats[pos:pos + n]
        pos += n
        return arr.reshape(shape) if shape is not None else arr

    kshapes = kernel_shapes(network)
    for layer in network.conv_layers:
        kshape = kshapes[layer.index]
        n = layer.filters
        biases = take(n)
        bn = (take(n), take(n), take(n)) if layer.batch_normalize else (None, None, None)
        kernel = take(int(np.prod(kshape)), kshape)
        convs[layer.index] = ConvWeights(biases, kernel, *bn)
    return DarknetWeights(header, convs)


def _chunks(network: Network, weights: DarknetWeights):
    """The header, then every array in file order, each checked against the cfg's shapes."""
    yield weights.header.to_bytes()
    kshapes = kernel_shapes(network)
    for layer in network.conv_layers:
        kshape = kshapes[layer.index]
        conv = weights.convs.get(layer.index)
        if conv is None:
            raise WeightsError(f"{layer.origin.describe()}: no parameters for this conv layer")
        if conv.batch_normalize != layer.batch_normalize:
            raise WeightsError(f"{layer.origin.describe()}: batch_normalize={int(layer.batch_normalize)} in the cfg, "
                               f"but the parameters {'have' if conv.batch_normalize else 'lack'} BN arrays")
        expected = [(layer.filters,)] * (4 if layer.batch_normalize else 1) + [kshape]
        for arr, shape in zip(conv.arrays(), expected, strict=True):
            if arr is None or arr.size != int(np.prod(shape)):
                got = None if arr is None else arr.shape
                raise WeightsError(f"{layer.origin.describe()}: expected an array of shape {shape}, got {got}")
            yield np.ascontiguousarray(arr, dtype=FLOAT).tobytes()


def weights_to_bytes(network: Network, weights: DarknetWeights) -> bytes:
    """Serialise ``weights`` in ``network``'s order, checking every array's shape."""
    return b"".join(_chunks(network, weights))


def write_weights(path: str | os.PathLike, network: Network, weights: DarknetWeights) -> None:
    """Write ``weights`` atomically (a temporary file renamed over ``path`` on success), array by array."""

    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        for chunk in _chunks(network, weights):
            fh.write(chunk)
