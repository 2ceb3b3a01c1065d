"""train --converge stops on the stated criterion; train --from-scratch keeps a checkpoint's architecture only."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import torch

from toolchain.models.training import (CONVERGED_GAIN, CONVERGENCE_FILE, Convergence, TrainConfig, reinitialise,
                                       run_convergence, train, training_trend)


def _feed(watch: Convergence, maps: list[float], epochs: int = 100) -> SimpleNamespace:
    trainer = SimpleNamespace(epoch=0, epochs=epochs, metrics={}, stop=False)
    for i, value in enumerate(maps):
        trainer.epoch, trainer.metrics = i, {"metrics/mAP50-95(B)": value}
        watch._epoch(trainer)
        if trainer.stop:
            break
    return trainer


def test_convergence_stops_once_the_window_gains_less_than_the_criterion():
    rising = [0.5 + 0.01 * i for i in range(30)]  # +1 point per epoch: never converged
    watch = Convergence(5)
    assert not _feed(watch, rising).stop and watch.converged_at is None
    assert "NOT converged" in watch.note()

    plateau = rising[:10] + [rising[9] + CONVERGED_GAIN / 10 * i for i in range(1, 10)]
    watch = Convergence(5)
    trainer = _feed(watch, plateau)
    assert trainer.stop and watch.converged_at == 15  # 5 epochs after the last real gain
    assert "converged at epoch 15" in watch.note()


def test_convergence_ignores_the_final_validation_of_best():
    watch = Convergence(3)
    trainer = _feed(watch, [0.1, 0.2, 0.3], epochs=3)
    trainer.epoch, trainer.metrics = 3, {"metrics/mAP50-95(B)": 0.9}  # the trainer validates best.pt at epochs+1
    watch._epoch(trainer)
    assert watch.maps == [0.1, 0.2, 0.3]


def test_a_resumed_run_keeps_counting_the_epochs_before_it(tmp_path):
    """--resume starts a new watch at the killed run's next epoch: its earlier epochs come from results.csv."""
    plateau = [0.80 + 0.01 * i for i in range(10)] + [0.89] * 12  # converges 5 epochs after epoch 10
    whole = Convergence(5)
    _feed(whole, plateau)
    run = _results_csv(tmp_path / "run", plateau[:8])  # killed after epoch 8
    resumed, trainer = Convergence(5), SimpleNamespace(epochs=100, stop=False, save_dir=run)
    for epoch in range(8, len(plateau)):
        trainer.epoch, trainer.metrics = epoch, {"metrics/mAP50-95(B)": plateau[epoch]}
        resumed._epoch(trainer)
        if trainer.stop:
            break
    assert resumed.maps == pytest.approx(whole.maps) and resumed.converged_at == whole.converged_at == 15


def test_a_continued_run_counts_its_checkpoint_as_epoch_0():
    """A restarted learning rate first costs points: the dip must not be called converged at a best below the start."""
    dip = [0.948] + [0.93, 0.92, 0.935, 0.94] * 6  # never back to the 0.957 it started from
    watch = Convergence(20, start=0.957)
    assert _feed(watch, dip).stop and watch.converged_at == 20
    assert "no epoch beat the checkpoint it continued (0.9570, counted as epoch 0)" in watch.note()
    unaware = Convergence(20)  # without the start the same run stops one epoch later, "converged" at its dip
    assert _feed(unaware, dip).stop and "best 0.9480" in unaware.note() and "0.957" not in unaware.note()

    recovering = [0.93 + 0.002 * i for i in range(30)]  # above its 0.957 from epoch 15 on, still rising
    watch = Convergence(20, start=0.957)
    assert not _feed(watch, recovering).stop
    assert "NOT converged after 30 epochs" in watch.note() and "(the checkpoint it continued: 0.9570" in watch.note()


def test_the_start_is_measured_once_per_run_and_kept_for_a_resume(tmp_path):
    """The checkpoint is validated when the run starts; a --resume of that run reads the start from its folder."""
    measured = []

    def measure():
        measured.append(0.957)
        return 0.957

    run = tmp_path / "stage"
    run.mkdir()
    first = Convergence(20, measure_start=measure)
    first._begin(SimpleNamespace(save_dir=run))
    assert measured == [0.957] and first.start == 0.957
    record = json.loads((run / CONVERGENCE_FILE).read_text())  # written before any epoch
    assert record["start_map50_95"] == 0.957 and record["note"].startswith("no epoch finished yet")
    resumed = Convergence(20, measure_start=measure)  # a new process: the killed run's watch is gone
    resumed._begin(SimpleNamespace(save_dir=run))
    assert measured == [0.957] and resumed.start == 0.957
    fresh = tmp_path / "other"
    fresh.mkdir()
    scratch = Convergence(20)  # nothing to measure: no start, still recorded
    scratch._begin(SimpleNamespace(save_dir=fresh))
    assert scratch.start is None and json.loads((fresh / CONVERGENCE_FILE).read_text())["start_map50_95"] is None


@pytest.mark.slow
def test_train_to_convergence_scores_the_checkpoint_it_continues(baseline_pt, small_data, tmp_path):
    from toolchain.models.validator import evaluate

    cfg = TrainConfig(epochs=1, imgsz=128, workers=0)
    start = evaluate(str(baseline_pt), str(small_data), imgsz=128, batch=cfg.batch).map50_95
    assert start > 0.05  # a trained checkpoint: a start worth keeping
    result = train(str(small_data), str(baseline_pt), tmp_path / "continued", cfg, converge=1)
    assert f"{start:.4f}" in result.notes[-1] and "counted as epoch 0" in result.notes[-1]
    kept = json.loads((tmp_path / "continued" / CONVERGENCE_FILE).read_text())  # the run's folder keeps its start
    assert kept["start_map50_95"] == pytest.approx(start) and kept["window"] == 1
    assert run_convergence(tmp_path / "continued", 1)["start"] == pytest.approx(start)


def _results_csv(folder, maps: list[float]):
    """A results.csv laid out as Ultralytics writes it (padded column names, one row per epoch)."""
    folder.mkdir()
    lines = ["                  epoch,         train/box_loss,   metrics/mAP50(B),metrics/mAP50-95(B)"]
    lines += [f"{i + 1:>20},{1.0:>20},{m + 0.05:>20.5f},{m:>20.5f}" for i, m in enumerate(maps)]
    (folder / "results.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_the_trend_of_a_finished_run_says_whether_more_epochs_would_help(tmp_path):
    """From the run's results.csv: the gain over its last 10 epochs (at most half the run) against the criterion."""
    rising = training_trend(_results_csv(tmp_path / "rising", [0.80 + 0.002 * i for i in range(24)]))
    assert "gained 2.00 points over the last 10 of 24 epochs" in rising and "still rising" in rising
    assert "best 0.8460" in rising
    # a noisy plateau: the best is 15 epochs old, the last 10 add nothing
    flat = training_trend(_results_csv(tmp_path / "flat", [0.9, 0.93, 0.95] + [0.948, 0.949] * 8 + [0.94] * 5))
    assert "gained 0.00 points" in flat and "levelled off" in flat
    short = training_trend(_results_csv(tmp_path / "short", [0.5]))
    assert short.startswith("1 training epoch(s): too few")
    assert training_trend(tmp_path / "no-run") is None
    unscored = tmp_path / "unscored"  # label-free distillation without --data: no mAP column
    unscored.mkdir()
    (unscored / "results.csv").write_text("epoch,train/kd_loss\n1,0.5\n2,0.4\n")
    assert training_trend(unscored) is None


def test_a_finished_run_is_judged_with_the_start_its_watch_kept(tmp_path):
    """A card read from a run folder later (scripts/baseline_card.py) counts the continued checkpoint as epoch 0."""
    dip = [0.948] + [0.93, 0.92, 0.935, 0.94] * 5  # 21 epochs, never back to its 0.957 start
    run = _results_csv(tmp_path / "continued", dip)
    alone = run_convergence(run, 20)  # results.csv alone: the dip looks like a run that gained nothing
    assert alone["start"] is None and alone["converged"] and alone["best"] == 0.948
    watch = Convergence(20, start=0.957)
    _feed(watch, dip)
    watch.save(run)
    judged = run_convergence(run, 20)
    assert judged["start"] == 0.957 and judged["converged"] and judged["gain"] == 0.0
    assert "no epoch beat the checkpoint" in json.loads((run / CONVERGENCE_FILE).read_text())["note"]
    rising = _results_csv(tmp_path / "rising", [0.93 + 0.002 * i for i in range(21)])
    assert run_convergence(rising, 20)["gain"] == pytest.approx(0.97 - 0.93)  # vs the best of epoch 1
    Convergence(20, start=0.96).save(rising)
    assert run_convergence(rising, 20)["gain"] == pytest.approx(0.97 - 0.96)  # vs the best of epochs 0..1
    assert run_convergence(tmp_path / "never-ran", 20) is None
    assert run_convergence(_results_csv(tmp_path / "killed-in-epoch-1", []), 20) is None  # a header, no epoch


def test_reinitialise_gives_fresh_weights_in_the_same_architecture(pruned50):
    from toolchain.models.loading import load_model

    trained = load_model(pruned50[0]).model
    fresh = reinitialise(copy.deepcopy(trained))
    shapes = [p.shape for p in trained.parameters()]
    assert [p.shape for p in fresh.parameters()] == shapes
    bns = [m for m in fresh.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) and m.eps == 1e-3 for m in bns)
    first = next(m for m in fresh.modules() if isinstance(m, torch.nn.Conv2d))
    trained_first = next(m for m in trained.modules() if isinstance(m, torch.nn.Conv2d))
    assert not torch.allclose(first.weight, trained_first.weight)



def test_reinitialise_starts_where_ultralytics_starts_a_model_from_its_yaml(baseline_pt):
    """Every tensor Ultralytics fixes at build time (BatchNorm, head biases, DFL's integral) equals a yaml build's."""
    from ultralytics.nn.tasks import DetectionModel

    from toolchain.models.loading import load_model

    trained = load_model(str(baseline_pt)).model
    fresh = reinitialise(copy.deepcopy(trained)).state_dict()
    built = DetectionModel("yolov8n.yaml", nc=trained.nc, verbose=False).state_dict()
    assert list(fresh) == list(built)
    random_init = {k for k, v in built.items() if v.ndim == 4 and ".dfl." not in k}  # conv kernels: drawn at random
    assert len(random_init) > 50
    differing = [k for k in built if k not in random_init and not torch.equal(fresh[k], built[k])]
    assert differing == []
    assert torch.equal(fresh["model.22.dfl.conv.weight"].flatten(), torch.arange(16, dtype=torch.float))

@pytest.mark.slow
def test_train_from_scratch_keeps_the_pruned_architecture(pruned50, small_data, tmp_path):
    from toolchain.models.loading import load_model

    path, report = pruned50
    result = train(str(small_data), str(path), tmp_path / "scratch", TrainConfig(epochs=1, imgsz=128, workers=0),
                   scratch=True)
    assert result.params == report.after.params
    assert sum(p.numel() for p in load_model(result.weights).model.parameters()) == report.after.params


def test_from_scratch_needs_a_checkpoint(small_data, tmp_path):
    from toolchain.core.errors import EdgepruneError

    with pytest.raises(EdgepruneError, match="from-scratch"):
        train(str(small_data), "yolov8n.yaml", tmp_path / "x", TrainConfig(epochs=1), scratch=True)
