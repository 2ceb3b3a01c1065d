"""Model sources: every kind of model file edgeprune takes, behind one interface (like the targets).

``prepare(path, ...)`` finds the source that claims the file (by suffix) and returns an
:class:`~toolchain.models.sources.base.ExportSource`; deploy, eval, bench, sweep and preflight take
that and never look at where it came from. Built in: ``pytorch`` (``.pt``/``.pth``:
Ultralytics checkpoints and pickled ``nn.Module`` files, told apart by content) and
``darknet`` (``.cfg`` + ``.weights``). A new source is one module in this package that
decorates a :class:`~toolchain.models.sources.base.ModelSource` with :func:`register_source`.
"""

from __future__ import annotations

import os
from pathlib import Path

from toolchain.core.errors import EdgepruneError, InputFileError
from toolchain.core.registry import Registry
from toolchain.models.sources.base import ExportSource, ModelSource, SourceRequest, SparsifyRequest, TrainRequest

SOURCES: Registry[ModelSource] = Registry("model source", "toolchain.models.sources", skip=("base",))

__all__ = ["ExportSource", "ModelSource", "SourceRequest", "SparsifyRequest", "TrainRequest", "SOURCES",
           "register_source", "list_sources", "source_for", "prepare", "default_imgsz", "check_weights",
           "companion_weights"]


def register_source(cls: type[ModelSource]) -> type[ModelSource]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    return SOURCES.register(cls)


def list_sources() -> list[str]:
    return SOURCES.names()


def source_for(path: str | os.PathLike) -> ModelSource:
    """The source that claims ``path``; a file nobody claims gets the list of what is accepted."""
    for cls in SOURCES.classes():
        source = cls()
        if source.claims(Path(path)):
            return source
    accepted = ", ".join(f"{cls.name} ({cls.summary})" for cls in SOURCES.classes())
    raise InputFileError(f"{path} is not a model file edgeprune takes; accepted: {accepted}")


def check_weights(path: str | os.PathLike, weights: str | None) -> None:
    """Refuse ``--weights`` for a model or artifact that carries its own (a source without separate weights)."""
    if weights is None:
        return
    try:
        separate = source_for(path).separate_weights
    except InputFileError:  # an artifact: its weights are inside it
        separate = False
    if not separate:
        raise EdgepruneError(f"--weights applies to models whose weights come in a file of their own (Darknet .cfg); "
                             f"{path} carries its own weights")


def companion_weights(path: str | os.PathLike, weights: str | None, what: str) -> str | None:
    """The weights file ``path`` runs with: ``weights``, else the one its source finds beside it.

    None for a model that carries its own weights, or for an artifact (which no source claims).

    Raises:
        InputFileError: the model needs a weights file and none is given or beside it (random
            parameters would make ``what`` meaningless).
    """
    try:
        source = source_for(path)
    except InputFileError:
        return None
    check_weights(path, weights)
    if not source.separate_weights:
        return None
    found = weights or source.default_weights(Path(path))
    if found is None:
        raise InputFileError(f"{what} {path} needs its trained weights: give --weights (no "
                             f"{Path(path).stem}.weights beside it)")
    return str(found)


def prepare(path: str | os.PathLike, imgsz: int | None = None, input_shape: tuple[int, ...] | None = None, *,
            weights: str | None = None, dynamic: bool = False, raw_head: bool = False, decode: bool = False,
            bn_eps: float | None = None) -> ExportSource:
    """Load ``path`` with its source and prepare it for export at ``imgsz`` (None: the model's own size).

    Example:
        >>> source = prepare("yolov4-tiny.cfg", weights="yolov4-tiny.weights")  # doctest: +SKIP
        >>> source.head["format"], source.input_hw  # doctest: +SKIP
        ('darknet', (416, 416))
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"model file {path} does not exist")
    source = source_for(path)
    check_weights(path, weights)
    request = SourceRequest(imgsz, input_shape, weights, dynamic, raw_head, decode)
    if bn_eps is not None:
        request = SourceRequest(imgsz, input_shape, weights, dynamic, raw_head, decode, bn_eps)
    source.check_request(path, request, bn_eps_given=bn_eps is not None)
    return source.prepare(path, request)


def default_imgsz(path: str | os.PathLike) -> tuple[int | None, str]:
    """(size, why) used when ``--imgsz`` is not given; (None, "") when the file says nothing."""
    path = Path(path)
    try:
        source = source_for(path)
    except InputFileError:
        return None, ""
    return source.default_imgsz(path)
