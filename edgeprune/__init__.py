"""edgeprune's Python API: prune a detector so it really gets faster, prove it, deploy it.

Each function does what the CLI command of the same name does, with the same defaults, and
returns the result object the command prints (``--json`` is its ``to_json()``)::

    import edgeprune

    report = edgeprune.prune("yolov8n.pt", "pruned.pt", ratio=0.3)
    trained = edgeprune.finetune("pruned.pt", "data.yaml", "runs/ft", epochs=10)
    built = edgeprune.deploy(trained.weights, "openvino", "ir", data="data.yaml")
    [speed] = edgeprune.bench(built.artifact, iterations=100)

The CLI is a thin layer over these functions (:mod:`edgeprune.api`): it checks options, calls
one, and prints its result. Errors caused by the input (a damaged file, a wrong option) are
:class:`EdgepruneError` with one sentence naming the file or option; the CLI prints that
sentence and exits 2.
"""

from __future__ import annotations

import os

from toolchain.core.errors import EdgepruneError

os.environ.setdefault("YOLO_OFFLINE", "1")  # nothing is downloaded at run time

__all__ = ["EdgepruneError", "Stream", "autotune", "bench", "board_bench", "cfg2py", "cfg_prune", "compare", "deploy",
           "dpu_rewrite", "evaluate", "finetune", "load", "optimize", "preflight", "prune", "report", "sparsify", "stream",
           "sweep", "synth", "train", "use_repository"]

from edgeprune.api import (autotune, bench, board_bench, cfg2py, cfg_prune, compare, deploy,  # noqa: E402
                           dpu_rewrite, evaluate, finetune, load, optimize, preflight, prune, report, sparsify,
                           stream, sweep, synth, train, use_repository)


def __getattr__(name: str):
    """``edgeprune.Stream`` is imported when first used: it loads the runtimes, ``import edgeprune`` does not."""
    if name == "Stream":
        from toolchain.pipelines.stream import Stream

        return Stream
    raise AttributeError(f"module 'edgeprune' has no attribute {name!r}")
