"""Name → target registry: one decorator to add a backend, one lookup that lists the known ones.

The registry is the truth: ``deploy`` subcommands and every ``--backend``/``--target`` choice
are built from it, so a new backend is one new module under ``targets/`` that decorates its
:class:`~targets.base.Target` with :func:`register_target`. Every module of the ``targets``
package is imported once to find them (that is the whole discovery rule).
"""

from __future__ import annotations

from pathlib import Path

from targets.base import Target
from toolchain.errors import EdgepruneError

_TARGETS: dict[str, type[Target]] = {}
_discovered = False


def register_target(cls: type[Target]) -> type[Target]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name or cls.name in _TARGETS:
        raise ValueError(f"target name {cls.name!r} is empty or registered twice")
    _TARGETS[cls.name] = cls
    return cls


def _load_builtins() -> None:
    """Import every top-level module and subpackage of ``targets`` (once), so their targets register."""
    global _discovered
    if _discovered:
        return
    import importlib
    import pkgutil

    import targets

    _discovered = True
    for info in pkgutil.iter_modules(targets.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"targets.{info.name}")


def list_targets() -> list[str]:
    _load_builtins()
    return sorted(_TARGETS)


def deploy_targets() -> list[str]:
    """Targets that build artifacts (``edgeprune deploy <name>``)."""
    return [name for name in list_targets() if _TARGETS[name].precisions]


def host_targets() -> list[str]:
    """Targets whose artifacts run on this host (``bench``/``eval --backend``, ``sweep --target``)."""
    return [name for name in list_targets() if _TARGETS[name].runs_on_host]


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
