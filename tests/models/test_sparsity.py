"""Sparsity training drives exactly the channels a prune will remove to zero, so that prune changes nothing.

What is checked on real models and real training runs: the planned share of BatchNorm gammas is
exactly zero after ``sparsify``, each epoch's mAP is recorded, ``prune --method bn`` with the same
settings leaves the validator's mAP where the sparsified model had it (no fine-tuning), and the
per-epoch records and histograms are written.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from toolchain.models.contract import flat_tensors
from toolchain.models.pruning import PruneConfig, plan_channels, prune_structured
from toolchain.models.sparsity import SparsityConfig, gammas, prox_l1_, sparsify
from toolchain.models.training import TrainConfig

TINY = TrainConfig(epochs=2, imgsz=128, batch=32, workers=0)


def _prediction_diff(reference, candidate, x) -> float:
    """Largest change of the decoded predictions (boxes and scores), relative to their scale."""
    with torch.no_grad():
        ref, got = flat_tensors(reference(x))[0], flat_tensors(candidate(x))[0]
    return float((ref - got).abs().max() / ref.abs().max())


def _saved_models_diff(reference: str, candidate: str) -> float:
    """:func:`_prediction_diff` of two checkpoints on a real synthetic image at 128 px.

    Why beside the validator's mAP: a sparsity run of a few optimizer steps on the small set can end near
    mAP 0, where "the same mAP" holds for any prune; equal predictions cannot.
    """
    import numpy as np

    from toolchain.core.synth import render_scene
    from toolchain.models.loading import load_model

    image, _labels = render_scene(np.random.default_rng(7), 128, 3, 6)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
    return _prediction_diff(load_model(reference).model.float().eval(), load_model(candidate).model.float().eval(), x)


def _zero_planned(model, plan: dict[str, list[int]]):
    """A float copy of ``model`` with the planned BatchNorm channels' scale and shift at zero (what sparsify ends with)."""
    zeroed = copy.deepcopy(model).float().eval()
    named = dict(zeroed.named_modules())
    with torch.no_grad():
        for name, idxs in plan.items():
            named[name].weight[idxs] = 0
            named[name].bias[idxs] = 0
    return zeroed


def test_prox_l1_shrinks_towards_zero_and_stops_there():
    bn = torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -0.2, 0.05, -0.01]))
    prox_l1_(torch.nn.Sequential(bn), 0.1)
    assert torch.allclose(bn.weight, torch.tensor([0.4, -0.1, 0.0, 0.0]))


@pytest.mark.parametrize("global_pruning", [False, True])
def test_zeroing_the_planned_channels_makes_the_bn_prune_lossless(baseline_pt, global_pruning):
    """The plan is exactly what the prune removes: with those gammas and betas at zero, outputs do not change."""
    from toolchain.models.loading import load_model

    loaded = load_model(baseline_pt)
    x = torch.rand(1, 3, 128, 128)
    cfg = PruneConfig(ratio=0.5, method="bn", global_pruning=global_pruning, imgsz=128)
    plan = plan_channels(loaded, cfg, x)
    modules = dict(loaded.model.named_modules())
    assert plan and all(isinstance(modules[name], torch.nn.BatchNorm2d) for name in plan)
    zeroed = _zero_planned(loaded.model, plan)
    prepared = dataclasses.replace(loaded, model=zeroed)
    outcome = prune_structured(prepared, cfg, x)
    assert outcome.after.macs < 0.6 * outcome.before.macs
    assert _prediction_diff(zeroed, outcome.model, x) < 1e-4
    # the same prune of the untouched model changes its predictions: zeroing is what made it lossless
    untouched = prune_structured(loaded, cfg, x).model
    assert _prediction_diff(loaded.model.float().eval(), untouched, x) > 1e-2


def test_a_plan_with_residual_units_makes_the_depth_and_width_prune_lossless(baseline_pt, tmp_path):
    """``prune --layers 2 --ratio 0.5`` of a model whose planned BNs are zero (units included) changes no output.

    The control zeroes the same channel plan but leaves the units' last BN alone: removing live units
    then changes the predictions, which is what made the --speedup recipe's prune lossy.
    """
    from toolchain.models.checkpoint import save_model
    from toolchain.models.layer_prune import unit_output_bn, units_to_remove
    from toolchain.models.loading import load_model
    from toolchain.models.prune_job import prune_file
    from toolchain.models.sparsity import plan_prune

    loaded = load_model(baseline_pt)
    x = torch.rand(1, 3, 256, 256)
    cfg = PruneConfig(ratio=0.5, method="bn", imgsz=128)
    units = [u.name for u in units_to_remove(loaded.model, 2)]
    plan = plan_prune(loaded, loaded.model, cfg, units)
    modules = dict(loaded.model.named_modules())
    for name in units:
        assert plan[unit_output_bn(name)] == list(range(modules[unit_output_bn(name)].num_features))
    results = {}
    for case, zeroed_plan in {"units zeroed": plan,
                              "units live": {k: v for k, v in plan.items() if k not in map(unit_output_bn, units)}
                              }.items():
        zeroed = _zero_planned(loaded.model, zeroed_plan)
        source = save_model(loaded, zeroed, tmp_path / f"{case}.pt")
        report = prune_file(str(source), str(tmp_path / f"{case}-pruned.pt"), cfg, layers=2, evaluate=False)
        assert report.mode == "layers+structured" and report.after.macs < 0.6 * report.before.macs
        if case == "units zeroed":  # the planned units are the ones removed (the control's rank differently)
            assert all(name in " ".join(report.notes) for name in units)
        pruned = load_model(tmp_path / f"{case}-pruned.pt").model.float().eval()
        results[case] = _prediction_diff(zeroed, pruned, x)
    assert results["units zeroed"] < 1e-4
    assert results["units live"] > 1e-2


def test_a_global_prune_of_a_sparsified_model_removes_what_its_ratio_says(baseline_pt):
    """With 70 % of the gammas exactly zero, --global --ratio 0.1 removes about 10 %, not every zero at once."""
    from toolchain.models.loading import load_model

    loaded = load_model(baseline_pt)
    x = torch.rand(1, 3, 128, 128)
    plan = plan_channels(loaded, PruneConfig(ratio=0.7, method="bn", imgsz=128), x)
    zeroed = _zero_planned(loaded.model, plan)
    g = gammas(zeroed)
    assert float((g == 0).float().mean()) > 0.6
    prepared = dataclasses.replace(loaded, model=zeroed)
    removed = {}
    for ratio in (0.1, 0.4):
        cfg = PruneConfig(ratio=ratio, method="bn", global_pruning=True, imgsz=128, round_to=1)
        outcome = prune_structured(prepared, cfg, x)
        removed[ratio] = 1 - gammas(outcome.model).numel() / g.numel()
        assert _prediction_diff(zeroed, outcome.model, x) < 1e-4  # only zeros went: lossless
    assert removed[0.1] == pytest.approx(0.1, abs=0.05)
    assert removed[0.4] == pytest.approx(0.4, abs=0.05)


@pytest.fixture(scope="module")
def sparse_run(baseline_pt, small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sparsify") / "run"
    seen = []
    result = sparsify(str(baseline_pt), str(small_data), out,
                      SparsityConfig(prune=PruneConfig(ratio=0.5, method="bn"), hold=0.5, train=TINY),
                      on_epoch=seen.append)
    return result, seen


def test_the_planned_share_of_gamma_is_exactly_zero(sparse_run, baseline_pt):
    from toolchain.models.loading import load_model

    result, _ = sparse_run
    g = gammas(load_model(result.weights).model)
    planned = result.channels / g.numel()
    assert 0.3 < planned < 0.7
    assert float((g == 0).float().mean()) >= planned - 1e-6
    # before: a dense model (no gamma near zero)
    assert float((gammas(load_model(baseline_pt).model) < 1e-2).float().mean()) < 0.01
    assert result.final.below["0.01"] >= planned - 1e-6


def test_each_epoch_reports_gamma_fractions_and_map(sparse_run):
    result, seen = sparse_run
    assert [s.epoch for s in result.snapshots] == [0, 1, 2]
    assert [s.epoch for s in seen] == [1, 2]
    assert result.start_map50_95 is not None and result.start_map50_95 > 0.3
    assert all(s.map50_95 is not None for s in result.snapshots)
    run = Path(result.run_dir)
    record = json.loads((run / "sparsity.json").read_text())
    assert record["prune"]["ratio"] == 0.5 and record["channels"] == result.channels
    assert set(record["snapshots"][-1]["below"]) == {"0.001", "0.01", "0.1"}
    assert torch.load(result.weights, weights_only=False)["train_args"]["nbs"] == TINY.batch  # a step per batch
    pngs = sorted(run.glob("gamma_hist_*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_prune_with_the_same_settings_keeps_the_sparsified_map(sparse_run, small_data, tmp_path):
    """The plateau: no fine-tuning, same mAP (the validator's, reported by prune with --data)."""
    from toolchain.models.prune_job import prune_file

    result, _ = sparse_run
    report = prune_file(result.weights, str(tmp_path / "p.pt"),
                        PruneConfig(ratio=0.5, method="bn", imgsz=128, data=str(small_data)))
    assert report.after.macs < 0.6 * report.before.macs
    assert report.before.map50_95 is not None and report.after.map50_95 is not None
    assert abs(report.after.map50_95 - report.before.map50_95) < 0.01
    assert _saved_models_diff(result.weights, str(tmp_path / "p.pt")) < 1e-4
    assert not any("not sparse" in note for note in report.notes)


def test_sparsify_with_layers_turns_the_units_prune_layers_removes_into_identities(baseline_pt, small_data, tmp_path):
    """After ``sparsify --layers 2`` the two units' last BN is exactly zero, and ``prune --layers 2 --ratio 0.5``
    (depth, then width) keeps the sparsified model's mAP with no fine-tuning."""
    from toolchain.models.layer_prune import unit_output_bn
    from toolchain.models.loading import load_model
    from toolchain.models.prune_job import prune_file

    cfg = PruneConfig(ratio=0.5, method="bn")
    result = sparsify(str(baseline_pt), str(small_data), tmp_path / "run",
                      SparsityConfig(prune=cfg, hold=0.5, layers=2, train=TINY))
    assert len(result.units) == 2
    assert json.loads((tmp_path / "run" / "sparsity.json").read_text())["units"] == list(result.units)
    modules = dict(load_model(result.weights).model.named_modules())
    for name in result.units:
        bn = modules[unit_output_bn(name)]
        assert not bn.weight.any() and not bn.bias.any()
    report = prune_file(result.weights, str(tmp_path / "p.pt"),
                        dataclasses.replace(cfg, imgsz=128, data=str(small_data)), layers=2)
    assert all(name in " ".join(report.notes) for name in result.units)
    assert report.after.macs < 0.6 * report.before.macs
    assert abs(report.after.map50_95 - report.before.map50_95) < 0.01
    assert _saved_models_diff(result.weights, str(tmp_path / "p.pt")) < 1e-4


def test_prune_bn_on_dense_gammas_says_it_acts_like_random(baseline_pt, tmp_path):
    from toolchain.models.prune_job import prune_file

    report = prune_file(str(baseline_pt), str(tmp_path / "p.pt"), PruneConfig(ratio=0.3, method="bn", imgsz=128))
    assert any("not sparse" in note and "random" in note for note in report.notes)
    assert report.before.map50_95 is None  # no --data: no accuracy numbers


def test_sparsify_refuses_gradient_criteria_and_bad_ratios(baseline_pt, small_data, tmp_path):
    from toolchain.core.errors import EdgepruneError

    with pytest.raises(EdgepruneError, match="taylor"):
        sparsify(str(baseline_pt), str(small_data), tmp_path / "a",
                 SparsityConfig(prune=PruneConfig(ratio=0.5, method="taylor"), train=TINY))
    with pytest.raises(EdgepruneError, match="--ratio"):
        sparsify(str(baseline_pt), str(small_data), tmp_path / "b",
                 SparsityConfig(prune=PruneConfig(ratio=1.0), train=TINY))
