"""The converged baseline (what accuracy claims compare against; the demo keeps the 40-epoch one) is what its card says.

`make baseline-converged` trains yolov8n from scratch until mAP50-95 gains < 0.3 points over 20
epochs and writes the card from the run's results.csv; these tests hold the committed file to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolchain.core.fileio import sha256_of
from toolchain.models.training import CONVERGED_GAIN

CONVERGED = Path(__file__).resolve().parents[2] / "assets" / "yolov8n-synth-converged.pt"
CONVERGED_416 = CONVERGED.with_name("yolov8n-synth-416-converged.pt")
CONVERGED_640 = CONVERGED.with_name("yolov8n-synth-640-converged.pt")


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(CONVERGED.with_suffix(".json").read_text())


def test_the_converged_baseline_met_the_stated_criterion(card, baseline_card):
    assert sha256_of(CONVERGED) == card["sha256"]
    assert "--converge 20" in card["recipe"][-1]
    training = card["training"]
    assert training["converged"] and training["gain_last_20_epochs"] < CONVERGED_GAIN
    assert training["epochs"] > 40  # the quick baseline's 40 epochs were not enough
    assert card["synth"] == baseline_card["synth"]  # the same data set as every other 256 claim


@pytest.mark.full
def test_the_converged_baseline_scores_its_card_on_regenerated_data(card, baseline_card, synth_data):
    from toolchain.models.validator import evaluate

    result = evaluate(str(CONVERGED), str(synth_data), imgsz=256)
    assert result.map50_95 == pytest.approx(card["val"]["map50_95"], abs=0.01)
    assert result.map50_95 > baseline_card["val"]["map50_95"] + 0.02  # converging gained something real


@pytest.fixture(scope="module")
def card_416() -> dict:
    return json.loads(CONVERGED_416.with_suffix(".json").read_text())


def test_the_416_baseline_continued_the_converged_one_until_the_same_criterion(card_416, card):
    """`make baseline-416`: the converged 256 model, trained on the same set drawn at 416 until converged again."""
    import torch

    assert sha256_of(CONVERGED_416) == card_416["sha256"]
    recipe = card_416["recipe"][-1]
    assert "--converge 20" in recipe and "--imgsz 416" in recipe and f"--model assets/{CONVERGED.name}" in recipe
    training = card_416["training"]
    assert training["converged"] and training["gain_last_20_epochs"] < CONVERGED_GAIN
    assert card_416["imgsz"] == 416 and card_416["synth"] == {**card["synth"], "imgsz": 416}
    saved = torch.load(CONVERGED_416, map_location="cpu", weights_only=False)
    assert saved["train_args"]["imgsz"] == 416  # every command's default size comes from the checkpoint


@pytest.mark.full
def test_the_416_baseline_scores_its_card_on_regenerated_data(card_416, synth_data_416):
    from toolchain.models.validator import evaluate

    result = evaluate(str(CONVERGED_416), str(synth_data_416), imgsz=416)
    assert result.map50_95 == pytest.approx(card_416["val"]["map50_95"], abs=0.01)


@pytest.fixture(scope="module")
def card_640() -> dict:
    return json.loads(CONVERGED_640.with_suffix(".json").read_text())


def test_the_640_baseline_continued_the_416_one_until_the_same_criterion(card_640, card_416):
    """`make baseline-640-converged`: the converged 416 model trained at 640, judged by a --converge 20 continuation."""
    import torch

    assert sha256_of(CONVERGED_640) == card_640["sha256"]
    first, continued = card_640["recipe"][-2:]
    assert f"--model assets/{CONVERGED_416.name}" in first and "--imgsz 640" in first
    assert "--converge 20" in continued and "--imgsz 640" in continued
    training = card_640["training"]
    assert training["converged"] and training["gain_last_20_epochs"] < CONVERGED_GAIN
    before, after = training["runs"]
    assert after["start_map50_95"] == pytest.approx(before["best_map50_95"], abs=0.005)  # its epoch 0: the first's best
    assert training["epochs"] == before["epochs"] + after["epochs"] and after["epochs"] >= 20
    assert card_640["val"]["map50_95"] == pytest.approx(max(after["start_map50_95"], after["best_map50_95"]), abs=0.005)
    assert card_640["imgsz"] == 640 and card_640["synth"] == {**card_416["synth"], "imgsz": 640}
    saved = torch.load(CONVERGED_640, map_location="cpu", weights_only=False)
    assert saved["train_args"]["imgsz"] == 640


@pytest.mark.full
def test_the_640_baseline_scores_its_card_on_regenerated_data(card_640, synth_data_640):
    from toolchain.models.validator import evaluate

    result = evaluate(str(CONVERGED_640), str(synth_data_640), imgsz=640)
    assert result.map50_95 == pytest.approx(card_640["val"]["map50_95"], abs=0.01)
    assert result.map50_95 > evaluate(str(CONVERGED_416), str(synth_data_640), imgsz=640).map50_95 + 0.02
