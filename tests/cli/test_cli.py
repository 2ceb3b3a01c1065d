"""The command line: help everywhere, JSON on request, one-sentence errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

from toolchain.core.fileio import sha256_of

COMMANDS = [[], ["data"], ["data", "synth"], ["train"], ["finetune"], ["prune"], ["eval"], ["demo"]]


def run(*args, check_rc=None):
    proc = subprocess.run([sys.executable, "-m", "toolchain.cli.main", *map(str, args)], capture_output=True, text=True)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stdout + proc.stderr
    return proc


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if "rror" in line]
    assert len(error_lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "edgeprune")
def test_help(cmd):
    proc = run(*cmd, "--help", check_rc=0)
    assert "Usage: " in proc.stdout and "--help" in proc.stdout


def test_synth_json(tmp_path):
    proc = run("data", "synth", tmp_path / "d", "--train", 6, "--val", 2, "--imgsz", 96, "--json", check_rc=0)
    result = json.loads(proc.stdout)
    assert result["train_images"] == 6 and (tmp_path / "d" / "data.yaml").exists()
    assert_one_line_error(run("data", "synth", tmp_path / "d", "--train", 2), "not empty")


def test_prune_table_and_json(baseline_pt, tmp_path):
    proc = run("prune", baseline_pt, "--ratio", 0.25, "--out", tmp_path / "p.pt", "--latency-iters", 3, check_rc=0)
    assert "Pruning result" in proc.stdout and "MACs" in proc.stdout and "latency" in proc.stdout
    proc = run("prune", baseline_pt, "--ratio", 0.25, "--out", tmp_path / "q.pt", "--latency-iters", 0, "--json",
               check_rc=0)
    report = json.loads(proc.stdout)  # stdout holds the JSON document only
    assert report["ratios"]["macs"] < 0.8 and report["after"]["latency"] is None


def test_unstructured_reports_sparsity_size_latency_and_the_lesson(baseline_pt, tmp_path):
    proc = run("prune", baseline_pt, "--unstructured", "--ratio", 0.5, "--out", tmp_path / "u.pt",
               "--latency-iters", 5, "--json", check_rc=0)
    report = json.loads(proc.stdout)
    assert report["mode"] == "unstructured"
    assert report["after"]["params"] == report["before"]["params"]
    assert report["after"]["macs"] == report["before"]["macs"]
    assert 0.45 <= report["after"]["zero_fraction"] <= 0.55
    assert report["after"]["zip_bytes"] < 0.85 * report["before"]["zip_bytes"]
    assert report["after"]["latency"]["median_ms"] > 0
    assert "dense runtimes" in report["notes"][0]
    assert "do not get faster" in proc.stderr or "latency does not drop" in proc.stderr
    pruned = torch.load(tmp_path / "u.pt", weights_only=False)["model"]
    assert not any(name.endswith("_orig") or name.endswith("_mask") for name, _ in pruned.named_parameters())


def test_bad_inputs_fail_in_one_sentence_and_keep_the_input(baseline_pt, synth_data, tmp_path):
    digest = sha256_of(baseline_pt)
    out = tmp_path / "o.pt"
    # missing file (Click's own usage error, also exit 2)
    proc = run("prune", tmp_path / "nope.pt", "--ratio", 0.5, "--out", out)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    # ratio outside (0, 1)
    for ratio in (0, 1, 1.5, -0.2):
        proc = run("prune", baseline_pt, "--ratio", ratio, "--out", out)
        assert proc.returncode == 2 and "between 0 and 1" in proc.stderr, proc.stderr
    # corrupt file
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(baseline_pt.read_bytes()[:5000])
    assert_one_line_error(run("prune", corrupt, "--ratio", 0.5, "--out", out), str(corrupt), "not a readable")
    # a state_dict without code
    sd = tmp_path / "sd.pt"
    torch.save({"w": torch.zeros(3)}, sd)
    assert_one_line_error(run("prune", sd, "--ratio", 0.5, "--out", out), str(sd), "state_dict")
    # class count mismatch: model nc=3, data nc=5
    data5 = tmp_path / "data5.yaml"
    data = yaml.safe_load(synth_data.read_text())
    data.update(nc=5, names={i: f"c{i}" for i in range(5)})
    data5.write_text(yaml.safe_dump(data))
    for cmd in (["prune", baseline_pt, "--ratio", 0.5, "--out", out, "--data", data5],
                ["eval", baseline_pt, "--data", data5],
                ["finetune", baseline_pt, "--data", data5, "--out", tmp_path / "ft"]):
        assert_one_line_error(run(*cmd), str(baseline_pt), "nc=3", "nc=5")
    # a plain module without --input-shape
    plain = tmp_path / "plain.pt"
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)), plain)
    assert_one_line_error(run("prune", plain, "--ratio", 0.5, "--out", out), "--input-shape")
    assert_one_line_error(run("prune", plain, "--ratio", 0.5, "--out", out, "--input-shape", "1,5,32,32"),
                          "does not accept an input of shape (1, 5, 32, 32)")
    # a model type we cannot prune
    obj = tmp_path / "obj.pt"
    torch.save([1, 2, 3], obj)
    assert_one_line_error(run("prune", obj, "--ratio", 0.5, "--out", out), "holds a list")
    # output over the input
    copy = tmp_path / "copy.pt"
    copy.write_bytes(baseline_pt.read_bytes())
    assert_one_line_error(run("prune", copy, "--ratio", 0.5, "--out", copy), "is the input file")
    assert sha256_of(copy) == digest
    # --json still yields a JSON error object
    proc = run("prune", sd, "--ratio", 0.5, "--out", out, "--json")
    assert proc.returncode == 2 and "state_dict" in json.loads(proc.stdout)["error"]
    assert not out.exists()
    assert sha256_of(baseline_pt) == digest


def test_train_and_eval_commands_run_offline(tmp_path):
    from toolchain.core.synth import SynthConfig, generate

    data = generate(tmp_path / "tiny", SynthConfig(train=16, val=8, imgsz=96, seed=3)).data_yaml
    proc = run("train", data, "--model", "yolov8n.yaml", "--epochs", 1, "--imgsz", 96, "--batch", 8, "--workers", 0,
               "--out", tmp_path / "run", "--json", check_rc=0)
    result = json.loads(proc.stdout)
    weights = result["weights"]
    assert weights.endswith("best.pt") and result["epochs"] == 1 and result["params"] > 1_000_000
    proc = run("eval", weights, "--data", data, "--imgsz", 96, "--json", check_rc=0)
    metrics = json.loads(proc.stdout)
    assert 0.0 <= metrics["map50"] <= 1.0 and metrics["task"] == "detect"
