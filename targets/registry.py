"""Name → target registry: one decorator to add a backend, one lookup that lists the known ones."""

from __future__ import annotations

from pathlib import Path

from targets.base import Target
from toolchain.errors import EdgepruneError

_TARGETS: dict[str, type[Target]] = {}
_BUILTIN_MODULES = ("targets.openvino", "targets.onnxruntime", "targets.torch_ref", "targets.vitis")


def register_target(cls: type[Target]) -> type[Target]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name or cls.name in _TARGETS:
        raise ValueError(f"target name {cls.name!r} is empty or registered twice")
    _TARGETS[cls.name] = cls
    return cls


def _load_builtins() -> None:
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def list_targets() -> list[str]:
    _load_builtins()
    return sorted(_TARGETS)


def get_target(name: str) -> Target:
    """The target called ``name``; an unknown name gets the list of known ones."""
    _load_builtins()
    try:
        return _TARGETS[name]()
    except KeyError:
        raise EdgepruneError(f"unknown target {name!r}; known targets: {', '.join(sorted(_TARGETS))}") from None


def target_for_artifact(artifact: str | Path) -> Target:
    """The target that can open ``artifact`` (an IR folder, an .onnx file, a .pt checkpoint...)."""
    _load_builtins()
    path = Path(artifact)
    for cls in _TARGETS.values():
        target = cls()
        if target.owns(path):
            return target
    raise EdgepruneError(
        f"{artifact} is not an artifact edgeprune can run (expected an OpenVINO IR folder or .xml, an .onnx file, "
        "a .pt checkpoint, or a deploy folder with deploy.json)"
    )
