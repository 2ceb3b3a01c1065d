"""Training Darknet cfgs in PyTorch: the committed from-scratch model, the CLI, sparsity, OpenCV loading.

The trained model (``assets/darknet/yolov4-tiny-synth.weights``, a half-width yolov4-tiny) is
made by ``make darknet-baseline`` with ``edgeprune train CFG`` from scratch; its card records
the mAP it scored, and the test re-scores it on the regenerated synthetic set.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from darknet_testlib import opencv_outputs, rel_err

from cfg_codegen.build import build_model
from cfg_codegen.parser import parse_cfg
from cfg_codegen.weights import read_weights
from toolchain.cli.main import cli

REPO = Path(__file__).resolve().parents[3]
ASSETS = REPO / "assets" / "darknet"
CFG = ASSETS / "yolov4-tiny-synth.cfg"
WEIGHTS = ASSETS / "yolov4-tiny-synth.weights"


@pytest.fixture(scope="module")
def card() -> dict:
    assert WEIGHTS.exists(), f"{WEIGHTS} is missing; run `make darknet-baseline` to reproduce it"
    return json.loads(WEIGHTS.with_suffix(".json").read_text())


def _cli_json(*args) -> dict:
    """The real CLI in a subprocess with --json: stdout must hold only the JSON document (library logs go to
    stderr at the file-descriptor level, which an in-process runner cannot show)."""
    proc = subprocess.run([sys.executable, "-m", "toolchain.cli.main", *map(str, args), "--json"], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _gammas(cfg: Path, weights: Path) -> np.ndarray:
    params = read_weights(weights, parse_cfg(cfg))
    return np.concatenate([np.abs(c.scales) for c in params.convs.values() if c.scales is not None])


def test_the_model_trained_from_scratch_detects(card, synth_data):
    """`edgeprune eval` on the committed cfg + .weights: mAP50 >= 0.5, and what its card says."""
    scores = _cli_json("eval", CFG, "--data", synth_data)
    assert scores["map50"] >= 0.5
    assert scores["map50"] == pytest.approx(card["val"]["map50"], abs=0.01)


def test_trained_weights_give_opencv_the_same_head_maps(card, synth_data):
    """The .weights the trainer wrote, read by OpenCV's Darknet importer, match our module to 1e-4."""
    network = parse_cfg(CFG)
    model = build_model(network, read_weights(WEIGHTS, network), bn_eps=1e-6).eval()  # OpenCV folds BN with 1e-6
    image = cv2.imread(str(next((synth_data.parent / "images" / "val").glob("*.jpg"))))
    blob = cv2.dnn.blobFromImage(image, 1 / 255.0, (256, 256), swapRB=True, crop=False)
    heads = [y.index for y in network.yolo_layers]
    maps, _ = opencv_outputs(CFG, WEIGHTS, blob, heads)
    import torch

    with torch.no_grad():
        ours = model(torch.from_numpy(blob))
    for theirs, mine in zip(maps, ours, strict=True):
        assert np.abs(theirs).max() > 1.0  # trained magnitudes, not a near-constant map
        assert rel_err(mine.numpy(), theirs) <= 1e-4


def test_train_cli_from_scratch_saves_cfg_and_weights_per_epoch(small_data, tmp_path):
    out = tmp_path / "run"
    summary = _cli_json("train", CFG, "--data", small_data, "--epochs", 2, "--workers", 0, "--out", out)
    assert [row["epoch"] for row in summary["history"]] == [1, 2]
    # 64 images / batch 16 = 4 iterations per epoch, 8 in all: the cfg's steps=4800,5400 of max_batches=6000 fall at
    # 80 % and 90 % of the run, so the last iteration of epoch 2 (7 of 8) runs at learning_rate * 0.1
    assert [row["lr"] for row in summary["history"]] == pytest.approx([0.00261, 0.000261])
    with open(out / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"] and {"box", "obj", "cls", "map50"} <= set(rows[0])
    for name in ("best", "last"):
        assert (out / "weights" / f"{name}.cfg").read_text() == CFG.read_text()
        cv2.dnn.readNetFromDarknet(str(out / "weights" / f"{name}.cfg"), str(out / "weights" / f"{name}.weights"))
    assert summary["weights"] == str(out / "weights" / "best.weights")
    last = read_weights(out / "weights" / "last.weights", parse_cfg(CFG))
    assert last.header.seen == 2 * 64  # two epochs of the 64 training images
    # from scratch really is from scratch: nothing like the committed trained gammas
    assert not np.allclose(_gammas(CFG, out / "weights" / "last.weights"), _gammas(CFG, WEIGHTS), atol=0.05)


@pytest.mark.full  # 31 s; make test trains a cfg from scratch above
def test_sparsity_training_lowers_gamma_mass_against_plain_training(card, small_data, tmp_path):
    """Same seed, same epochs from the trained weights: only the BN-gamma L1 penalty differs."""
    args = ["--data", small_data, "--epochs", 2, "--workers", 0, "--seed", 3, "--lr0", 0.01]
    _cli_json("finetune", CFG, *args, "--out", tmp_path / "plain")
    sparse = _cli_json("sparsify", CFG, *args, "--s", 0.05, "--out", tmp_path / "sparse")
    start = _gammas(CFG, WEIGHTS).sum()
    plain_mass = _gammas(CFG, tmp_path / "plain" / "weights" / "last.weights").sum()
    sparse_mass = _gammas(CFG, tmp_path / "sparse" / "weights" / "last.weights").sum()
    assert sparse_mass < plain_mass and sparse_mass < start
    record = sparse
    assert record["strength"] == 0.05 and [s["epoch"] for s in record["snapshots"]] == [0, 1, 2]
    assert record["snapshots"][-1]["l1_mean"] < record["snapshots"][0]["l1_mean"]
    assert all(Path(p).is_file() for p in record["histograms"])  # the same gamma_hist_*.png as Ultralytics sparsify


def test_darknet_only_options_are_refused_for_ultralytics_models(baseline_pt, synth_data, tmp_path):
    result = CliRunner().invoke(cli, ["finetune", str(baseline_pt), "--data", str(synth_data), "--weights", str(WEIGHTS),
                                      "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--weights does not apply to" in result.output and "Darknet cfg" in result.output
    result = CliRunner().invoke(cli, ["train", str(CFG), "--out", str(tmp_path / "y")])
    assert result.exit_code == 2 and "needs --data" in result.output
    result = CliRunner().invoke(cli, ["finetune", str(CFG), "--data", str(synth_data), "--distill", str(baseline_pt),
                                      "--out", str(tmp_path / "z")])
    assert result.exit_code == 2 and "distillation works on Ultralytics checkpoints" in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()


@pytest.mark.full
def test_sparsify_prune_finetune_recovers_to_within_3_points_of_the_sparsified_model(card, synth_data, tmp_path):
    """Seed 002's recipe end to end on the committed model: sparsify, cfg-prune at the point the recipe's sweep
    chose (global percent 0.6, benchmarks/darknet_recipe.py), fine-tune; the γ mass really fell first."""
    from cfg_codegen.prune import PruneConfig, prune_darknet
    from toolchain.pipelines.artifact_eval import evaluate_artifact

    sparse = _cli_json("sparsify", CFG, "--data", synth_data, "--s", 0.05, "--lr0", 0.01, "--epochs", 20,
                       "--out", tmp_path / "sparse")
    sparse_cfg, sparse_weights = Path(sparse["train"]["cfg"]), Path(sparse["weights"])  # sparsify reports its training
    assert sparse_weights.name == "last.weights"  # the sparsest epoch, not the early best one
    gammas = _gammas(sparse_cfg, sparse_weights)
    assert (gammas < 1e-2).mean() > 0.4 and gammas.sum() < 0.2 * _gammas(CFG, WEIGHTS).sum()
    sparse_map50 = evaluate_artifact(str(sparse_cfg), synth_data, weights=str(sparse_weights)).map50

    report = prune_darknet(sparse_cfg, sparse_weights, tmp_path / "pruned", PruneConfig(0.6, 0.01, 0))
    pruned_cfg = tmp_path / "pruned" / "pruned.cfg"
    assert report.params_after < 0.5 * report.params_before
    tuned = _cli_json("finetune", pruned_cfg, "--data", synth_data, "--epochs", 10,
                      "--out", tmp_path / "tuned")  # the cfg's own learning rate
    tuned_map50 = evaluate_artifact(tuned["cfg"], synth_data, weights=tuned["weights"]).map50
    assert tuned_map50 >= sparse_map50 - 0.03, (tuned_map50, sparse_map50)
