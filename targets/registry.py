"""Name → target registry: one decorator to add a backend, one lookup that lists the known ones.

The registry is the truth: ``deploy`` subcommands and every ``--backend``/``--target`` choice
are built from it, so a new backend is one new module under ``targets/`` that decorates its
:class:`~targets.base.Target` with :func:`register_target`. Every module of the ``targets``
package is imported once to find them (that is the whole discovery rule).
"""

from __future__ import annotations

from pathlib import Path

from targets.base import Target
from toolchain.core.errors import EdgepruneError
from toolchain.core.registry import Registry

TARGETS: Registry[Target] = Registry("target", "targets", skip=("base", "registry"))


def register_target(cls: type[Target]) -> type[Target]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    return TARGETS.register(cls)


def list_targets() -> list[str]:
    return TARGETS.names()


def deploy_targets() -> list[str]:
    """Targets that build artifacts (``edgeprune deploy <name>``)."""
    return [cls.name for cls in TARGETS.classes() if cls.precisions]


def host_targets() -> list[str]:
    """Targets whose artifacts run on this host (``bench``/``eval --backend``, ``sweep --target``)."""
    return [cls.name for cls in TARGETS.classes() if cls.runs_on_host]


def get_target(name: str) -> Target:
    """The target called ``name``; an unknown name gets the list of known ones."""
    return TARGETS.get(name)()


def target_for_artifact(artifact: str | Path) -> Target:
    """The target that can open ``artifact`` (an IR folder, an .onnx file, a .pt checkpoint, a .cfg...)."""
    path = Path(artifact)
    for cls in TARGETS.classes():
        target = cls()
        if target.owns(path):
            return target
    raise EdgepruneError(
        f"{artifact} is not an artifact edgeprune can run (expected an OpenVINO IR folder or .xml, an .onnx file, "
        "a .pt checkpoint, a Darknet .cfg, or a deploy folder with deploy.json)"
    )
