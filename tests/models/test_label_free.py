"""Label-free recovery (``finetune --images``): the pruned model learns its teacher's outputs on any images."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from click.testing import CliRunner

from toolchain.cli.main import cli


def _json(result) -> dict:
    assert result.exit_code == 0, result.output[-3000:]
    return json.loads(result.output[result.output.index("{"):])


def _losses(run_dir) -> list[float]:
    lines = (run_dir / "results.csv").read_text().splitlines()
    assert lines[0] == "epoch,distillation_loss"
    return [float(line.split(",")[1]) for line in lines[1:]]


def test_an_ultralytics_prune_learns_its_recorded_teacher_without_labels(pruned50, baseline_pt, micro_data, tmp_path,
                                                                         reload_without_edgeprune):
    pruned, _report = pruned50
    images = micro_data.parent / "images" / "train"
    record = _json(CliRunner().invoke(cli, ["finetune", str(pruned), "--images", str(images), "--data", str(micro_data),
                                            "--epochs", "3", "--batch", "4", "--out", str(tmp_path / "ft"), "--json"]))
    assert record["teacher"] == str(baseline_pt.resolve())  # the unpruned source prune recorded
    losses = _losses(tmp_path / "ft")
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert record["map50_95"] is not None and 0.0 <= record["map50_95"] <= 1.0  # --data scores the result
    assert any("no labels used" in note for note in record["notes"])
    reloaded = reload_without_edgeprune(record["weights"], 256)  # saved as the Ultralytics checkpoint it came in
    assert reloaded["task"] == "detect" and reloaded["results"] == 1


def test_a_plain_module_learns_a_given_teacher(micro_data, tmp_path):
    torch.manual_seed(0)

    def net(width: int) -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Conv2d(3, width, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(width, 7, 1))

    teacher, student = tmp_path / "teacher.pt", tmp_path / "student.pt"
    torch.save(net(16).eval(), teacher)
    torch.save(net(4).eval(), student)
    images = micro_data.parent / "images" / "train"
    args = ["finetune", str(student), "--images", str(images), "--imgsz", "64", "--epochs", "10", "--batch", "4", "--lr0", "0.01",
            "--out", str(tmp_path / "ft")]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and "--distill" in refused.output  # a plain module records no teacher
    record = _json(CliRunner().invoke(cli, [*args, "--distill", str(teacher), "--json"]))
    losses = _losses(tmp_path / "ft")
    assert losses[-1] < 0.5 * losses[0], losses
    trained = torch.load(record["weights"], weights_only=False)
    assert isinstance(trained, torch.nn.Sequential) and trained[0].out_channels == 4


def test_a_pruned_darknet_cfg_learns_the_cfg_it_was_pruned_from(micro_data, tmp_path):
    import cv2

    from cfg_codegen.build import build_model
    from cfg_codegen.parser import parse_cfg
    from cfg_codegen.weights import read_weights
    cfg = Path(__file__).resolve().parents[2] / "assets" / "darknet" / "yolov4-tiny-synth.cfg"  # `make darknet-baseline`, weights beside it
    pruned = _json(CliRunner().invoke(cli, ["cfg-prune", str(cfg), str(cfg.with_suffix(".weights")),
                                            "--global-percent", "0.3", "--out", str(tmp_path / "p"), "--json"]))
    student = tmp_path / "p" / "pruned.cfg"
    images = micro_data.parent / "images" / "train"
    args = ["finetune", str(student), "--images", str(images), "--data", str(micro_data), "--epochs", "3",
            "--batch", "4", "--out", str(tmp_path / "ft")]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and "--distill" in refused.output and not (tmp_path / "ft").exists()
    record = _json(CliRunner().invoke(cli, [*args, "--distill", str(cfg), "--json"]))
    losses = _losses(tmp_path / "ft")
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert record["teacher"] == str(cfg) and record["map50_95"] is not None  # --data scored the result
    best_cfg, best_weights = tmp_path / "ft" / "weights" / "best.cfg", tmp_path / "ft" / "weights" / "best.weights"
    assert record["weights"] == str(best_weights) and best_cfg.read_text() == student.read_text()
    # Saved as Darknet saves: OpenCV's importer reads it, and the weights moved from where the prune left them.
    assert not cv2.dnn.readNetFromDarknet(str(best_cfg), str(best_weights)).empty()
    network = parse_cfg(student)
    before = build_model(network, read_weights(str(pruned["weights"]), network)).state_dict()
    after = build_model(network, read_weights(str(best_weights), network)).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
