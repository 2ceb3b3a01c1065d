"""Sparsity training really shrinks BatchNorm gamma, records it, and yields a prunable checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from toolchain.sparsity import SparsityConfig, add_l1_subgradient, gammas, sparsify
from toolchain.training import TrainConfig, finetune

TINY = TrainConfig(epochs=2, imgsz=128, batch=32, workers=0, lr0=0.02)


def test_l1_subgradient_is_s_times_sign():
    bn = torch.nn.BatchNorm2d(3)
    model = torch.nn.Sequential(bn)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -0.2, 0.0]))
    bn.weight.grad = torch.ones(3)
    add_l1_subgradient(model, 0.1)
    assert torch.allclose(bn.weight.grad, torch.tensor([1.1, 0.9, 1.0]))


@pytest.fixture(scope="module")
def sparse_run(baseline_pt, small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("sparsify") / "run"
    return sparsify(str(baseline_pt), str(small_data), out,
                    SparsityConfig(strength=0.05, train=TINY, warmup_epochs=0))


def test_gamma_l1_mass_drops_against_plain_training(sparse_run, baseline_pt, small_data, tmp_path):
    from toolchain.loading import load_model

    plain = finetune(str(baseline_pt), str(small_data), tmp_path / "plain", TINY)
    sparse_mass = float(gammas(load_model(sparse_run.weights).model).sum())
    plain_mass = float(gammas(load_model(plain.weights).model).sum())
    # Same seed, data and schedule: only the penalty differs (~5200 gammas, each pushed ~3e-3 towards 0).
    assert sparse_mass < plain_mass - 5.0, (sparse_mass, plain_mass)
    means = [s.l1_mean for s in sparse_run.snapshots]
    assert [s.epoch for s in sparse_run.snapshots] == [0, 1, 2]
    assert means[0] > means[1] > means[2]


def test_histograms_and_json_are_written(sparse_run):
    run = Path(sparse_run.run_dir)
    pngs = sorted(run.glob("gamma_hist_*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in pngs)
    record = json.loads((run / "sparsity.json").read_text())
    assert record["strength"] == 0.05 and len(record["snapshots"]) == 3
    assert set(record["snapshots"][-1]["below"]) == {"0.001", "0.01", "0.1"}


def test_output_prunes_with_bn_method(sparse_run, tmp_path):
    from toolchain.prune_run import prune_file
    from toolchain.pruning import PruneConfig

    report = prune_file(sparse_run.weights, str(tmp_path / "p.pt"), PruneConfig(ratio=0.3, method="bn", imgsz=128),
                        latency_iters=0)
    assert report.after.params < report.before.params
