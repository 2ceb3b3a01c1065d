"""The KV260 path for Darknet cfgs: preflight judges the graph deploy vitis builds; dpu-rewrite fixes mish/swish."""

from __future__ import annotations

import json

from click.testing import CliRunner
from darknet_testlib import cfg_path, resized_copy

from cfg_codegen.build import random_model
from cfg_codegen.parser import parse_cfg
from cfg_codegen.weights import write_weights
from toolchain.cli.main import cli
from toolchain.core.fileio import sha256_of


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def pair(tmp_path, text=None, name="tiny"):
    cfg = resized_copy(cfg_path("yolov4-tiny.cfg"), 160, 128, tmp_path, text)
    cfg = cfg.rename(tmp_path / f"{name}.cfg")
    net = parse_cfg(cfg)
    write_weights(tmp_path / f"{name}.weights", net, random_model(net, 128, 160, seed=2)[1])
    return cfg, tmp_path / f"{name}.weights"


def test_stock_leaky_cfg_is_one_dpu_subgraph(tmp_path):
    cfg, _ = pair(tmp_path)
    run = invoke("preflight", cfg, "--json")  # weights: tiny.weights beside tiny.cfg
    assert run.exit_code == 0, run.output
    report = json.loads(run.output[run.output.index("{"):])
    assert report["expected_dpu_subgraphs"] == 1 and report["summary"]["cpu_fallbacks_backbone_neck"] == 0
    assert "26/256" in report["graph"] and any("[yolo] decode" in step for step in report["host_postprocess"])


def test_mish_cfg_is_rewritten_to_leaky_and_then_fits_the_dpu(tmp_path):
    text = cfg_path("yolov4-tiny.cfg").read_text().replace("activation=leaky", "activation=mish")
    cfg, weights = pair(tmp_path, text, "mish")
    before = json.loads(invoke("preflight", cfg, "--json").stdout)
    assert before["expected_dpu_subgraphs"] > 1 and "mish" in {r["op"] for r in before["rows"] if r["device"] == "CPU"}

    digest = sha256_of(cfg), sha256_of(weights)
    run = invoke("dpu-rewrite", cfg, "--out", tmp_path / "dpu" / "rewritten.cfg", "--json")
    assert run.exit_code == 0, run.output
    report = json.loads(run.output[run.output.index("{"):])
    assert report["replaced"] == {"mish": len(parse_cfg(cfg).conv_layers) - 2} and report["changed_function"]
    assert "fine-tune" in run.output and (sha256_of(cfg), sha256_of(weights)) == digest  # inputs untouched
    rewritten = tmp_path / "dpu" / "rewritten.cfg"
    assert sha256_of(rewritten.with_suffix(".weights")) == digest[1]
    after = json.loads(invoke("preflight", rewritten, "--json").stdout)
    assert after["expected_dpu_subgraphs"] == 1

    refused = invoke("dpu-rewrite", cfg, "--out", tmp_path / "x.cfg", "--act", "hardswish")
    assert refused.exit_code == 2 and "leaky, relu" in refused.output and not (tmp_path / "x.cfg").exists()
