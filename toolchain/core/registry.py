"""Name → class registries that find their entries by importing every module of a package.

Why one class: targets and model sources are both "one new file, found through a registry"
(as timm's models are); the decorator, the discovery rule and the "unknown name, known
names are ..." error must be the same for both, so they live here once.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

from toolchain.core.errors import EdgepruneError

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes registered by their ``name`` attribute; the modules of ``package`` are imported on first use.

    Args:
        kind: what an entry is, for messages ("target").
        package: dotted package whose modules register entries when imported.
        skip: module names of that package that register nothing (e.g. its interface module).
    """

    def __init__(self, kind: str, package: str, skip: tuple[str, ...] = ()):
        self.kind, self.package, self.skip = kind, package, skip
        self._entries: dict[str, type[T]] = {}
        self._discovered = False

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: make ``cls`` available under ``cls.name``."""
        name = getattr(cls, "name", "")
        if not name or name in self._entries:
            raise ValueError(f"{self.kind} name {name!r} is empty or registered twice")
        self._entries[name] = cls
        return cls

    def unregister(self, name: str) -> None:
        """Remove an entry (tests register temporary ones)."""
        self._entries.pop(name, None)

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_") and info.name not in self.skip:
                importlib.import_module(f"{self.package}.{info.name}")

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def classes(self) -> list[type[T]]:
        return [self._entries[name] for name in self.names()]

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``; an unknown name raises listing the known ones."""

        self._discover()
        try:
            return self._entries[name]
        except KeyError:
            raise EdgepruneError(f"unknown {self.kind} {name!r}; known {self.kind}s: "
                                 f"{', '.join(sorted(self._entries))}") from None
