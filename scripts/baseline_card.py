"""Install a freshly trained baseline as the committed test/demo model, with a card.

Usage (see `make baseline`, `make baseline-640`, `make darknet-baseline`):
    python scripts/baseline_card.py BEST.pt DATA.yaml OUT.pt [IMGSZ [RECIPE_LINE ...]] [--continued-by RUN]
    python scripts/baseline_card.py BEST.weights DATA.yaml OUT.weights [IMGSZ [RECIPE_LINE ...]]
(a Darknet run's BEST.weights is scored with the BEST.cfg beside it, by edgeprune's pipeline).
The card (OUT.json) records how the model was made and what it scores, so tests can check
the committed file against a regenerated data set, and (from the run's results.csv and, for a run
that continued a checkpoint, the start its convergence.json counted as epoch 0) how many epochs it
trained and what it gained over the last 20: whether a claim's baseline was converged.

``--continued-by RUN``: BEST's run ended before the criterion was met and RUN continued BEST under
``train --converge 20``. The card records both runs, judges convergence by RUN (BEST's score is its
epoch 0) and installs the better model: RUN's best.pt if an epoch of RUN beat BEST, else BEST itself.
Why: a continuation's restarted learning rate first costs points; when 20 epochs of it never win them
back, the checkpoint it continued is the converged model, not the continuation's best.pt.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from toolchain.models.validator import evaluate
from toolchain.core.fileio import sha256_of
from toolchain.models.loading import read_data_yaml


DEFAULT_RECIPE = [
    "edgeprune data synth .cache/synth-default",
    "edgeprune train .cache/synth-default/data.yaml --model yolov8n.yaml --epochs 40 --imgsz 256 "
    "--out .cache/baseline-run",
]


def _darknet_scores(best: str, data: str, imgsz: int):
    """A Darknet run's best.weights scored through `eval`'s pipeline, with the cfg beside it."""
    from toolchain.pipelines.artifact_eval import evaluate_artifact

    return evaluate_artifact(str(Path(best).with_suffix(".cfg")), data, imgsz=imgsz, weights=best)


def _training(run_dir: Path) -> dict | None:
    """Epochs trained and the mAP50-95 gained over the last 20, by train --converge's criterion (start = epoch 0)."""
    from toolchain.models.training import run_convergence

    run = run_convergence(run_dir, 20)
    if run is None:
        return None
    return {"epochs": run["epochs"], "start_map50_95": run["start"], "best_map50_95": run["best"],
            "gain_last_20_epochs": run["gain"], "converged": run["converged"]}


def _continued(best: str, first: dict | None, continuation: Path) -> tuple[str, dict]:
    """The model to install and the card's training entry when ``continuation`` continued ``best``'s run (``first``)."""
    then = _training(continuation)
    if then is None or then["start_map50_95"] is None:
        raise SystemExit(f"{continuation} is no `train --converge` run that continued a checkpoint")
    beaten = then["best_map50_95"] > then["start_map50_95"]
    installed = str(continuation / "weights" / "best.pt") if beaten else best
    return installed, {**then, "epochs": (first or {}).get("epochs", 0) + then["epochs"], "runs": [first, then],
                       "installed": "the continuation's best.pt" if beaten else
                       "the checkpoint the continuation started from: none of its epochs beat it"}


def main(best: str, data: str, out: str, imgsz: str = "256", *recipe: str, continued_by: str | None = None) -> None:
    darknet = best.endswith(".weights")
    training = None if darknet else _training(Path(best).parents[1])
    if continued_by:
        best, training = _continued(best, training, Path(continued_by))
    result = _darknet_scores(best, data, int(imgsz)) if darknet else evaluate(best, data, imgsz=int(imgsz))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, out)
    card = {
        "recipe": list(recipe) or DEFAULT_RECIPE,
        "imgsz": int(imgsz),
        "synth": read_data_yaml(data).get("edgeprune_synth"),
        "sha256": sha256_of(out),
        "training": training,
        "val": {"map50": result.map50, "map50_95": result.map50_95, "precision": result.precision,
                "recall": result.recall},
    }
    Path(out).with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("args", nargs="+", metavar="BEST DATA OUT [IMGSZ [RECIPE_LINE ...]]")
    parser.add_argument("--continued-by", metavar="RUN")
    options = parser.parse_intermixed_args()
    main(*options.args, continued_by=options.continued_by)
