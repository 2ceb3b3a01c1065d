"""Preflight: every op judged against the KV260 DPU's documented limits, and the subgraph estimate."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from targets.vitis.dpu import KV260, LEAKY_SLOPE
from targets.vitis.trace import trace_ops
from targets.vitis.preflight import analyse, preflight

from vitis_testlib import invoke, one_error_line


def test_unmodified_yolov8n_falls_back_to_the_cpu_on_silu_and_the_head_sigmoid(baseline_pt):
    report = preflight(baseline_pt, "kv260", 256)
    summary = report.to_json()["summary"]
    silu = [r for r in report.rows if r.op == "silu"]
    assert len(silu) == 57 and all(r.device == "CPU" and "dpu-rewrite" in r.fix for r in silu)
    sigmoid = [r for r in report.rows if r.op == "sigmoid"]
    assert len(sigmoid) == 1 and sigmoid[0].device == "CPU" and sigmoid[0].region == "head"
    convs = [r for r in report.rows if r.op == "conv2d"]
    assert len(convs) == 64 and all(r.device == "DPU" for r in convs)
    assert summary["cpu_fallbacks_backbone_neck"] == 57 and summary["cpu_fallbacks_head"] > 0
    assert report.expected_dpu_subgraphs > 20  # every SiLU cuts the graph


def test_after_dpu_rewrite_backbone_neck_and_head_are_one_dpu_subgraph(rewritten_pt):
    report = preflight(rewritten_pt, "kv260", 256)
    assert report.fallbacks == [] and report.expected_dpu_subgraphs == 1
    head = [r for r in report.rows if r.region == "head"]
    assert {r.op for r in head} == {"conv2d", "hardswish", "cat"} and len([r for r in head if r.op == "cat"]) == 3
    assert {r.op for r in report.rows} >= {"conv2d", "hardswish", "cat", "max_pool2d", "resize", "add", "chunk"}
    assert "class sigmoid" in report.host_postprocess


class _Net(nn.Module):
    """One op per documented limit, each feeding the next through a supported conv."""

    def __init__(self):
        super().__init__()
        self.big_kernel = nn.Conv2d(3, 8, 17, padding=8)
        self.big_stride = nn.Conv2d(8, 8, 3, stride=9, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.dw_act = nn.Hardswish()
        self.conv = nn.Conv2d(8, 8, 1)
        self.leaky_bad = nn.LeakyReLU(0.1)
        self.conv2 = nn.Conv2d(8, 8, 1)
        self.leaky_good = nn.LeakyReLU(LEAKY_SLOPE)
        self.pool_big = nn.MaxPool2d(9, 1, 4)
        self.pool_ok = nn.MaxPool2d(5, 1, 2)
        self.bilinear = nn.Upsample(scale_factor=2, mode="bilinear")
        self.nearest = nn.Upsample(scale_factor=2, mode="nearest")
        self.after_add = nn.Hardswish()

    def forward(self, x):
        x = self.big_stride(self.big_kernel(x))
        x = self.dw_act(self.depthwise(self.grouped(x)))
        x = self.leaky_good(self.conv2(self.leaky_bad(self.conv(x))))
        x = self.pool_ok(self.pool_big(x))
        x = self.nearest(self.bilinear(x))
        return self.after_add(x + x.sigmoid())


def test_each_documented_limit_sends_its_op_to_the_cpu_with_the_reason():
    rows, _ = analyse(trace_ops(_Net().eval(), torch.rand(1, 3, 72, 72)), KV260)
    by_layer = {(r.layer, r.op): r for r in rows}
    expect_cpu = {
        ("big_kernel", "conv2d"): "kernel 17x17 outside [1, 16]",
        ("big_stride", "conv2d"): "stride 9x9 outside [1, 8]",
        ("grouped", "conv2d"): "grouped convolution (groups=2",
        ("dw_act", "hardswish"): "after a depthwise convolution",
        ("leaky_bad", "leaky_relu"): "26/256",
        ("pool_big", "max_pool2d"): "pool kernel 9x9",
        ("bilinear", "resize"): "bilinear",
        ("(top)", "sigmoid"): "no DPU implementation",
        ("after_add", "hardswish"): "hardswish after add",
    }
    for key, reason in expect_cpu.items():
        assert by_layer[key].device == "CPU" and reason in by_layer[key].reason, by_layer[key]
    for key in (("depthwise", "conv2d"), ("conv", "conv2d"), ("leaky_good", "leaky_relu"), ("pool_ok", "max_pool2d"),
                ("nearest", "resize")):
        assert by_layer[key].device == "DPU", by_layer[key]


@pytest.mark.parametrize("act, subgraphs", [(nn.SiLU, 3), (nn.ReLU, 1)])
def test_subgraph_estimate_counts_dpu_regions_cut_by_cpu_ops(act, subgraphs):
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), act(), nn.Conv2d(8, 8, 3, padding=1), act(),
                        nn.Conv2d(8, 8, 1)).eval()
    _, count = analyse(trace_ops(net, torch.rand(1, 3, 32, 32)), KV260)
    assert count == subgraphs


class _SPP(nn.Module):
    """YOLOv7-tiny's SPP: pools of 5, 9 and 13 side by side, concatenated; the DPU pools up to 8."""

    def __init__(self):
        super().__init__()
        self.cv1, self.cv2 = nn.Conv2d(3, 8, 1), nn.Conv2d(32, 8, 1)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in (5, 9, 13))

    def forward(self, x):
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [pool(x) for pool in self.pools], 1))


def test_a_cpu_op_beside_a_dpu_branch_still_splits_the_dpu_graph():
    """The 5x5 branch keeps the DPU ops connected, but the concat waits for the CPU's pools: two subgraphs."""
    rows, count = analyse(trace_ops(_SPP().eval(), torch.rand(1, 3, 32, 32)), KV260)
    assert [r.detail for r in rows if r.device == "CPU"] == ["k9 s1 p4", "k13 s1 p6"]
    assert count == 2


def test_cli_prints_the_fallback_table_and_json(baseline_pt, tmp_path):
    table = invoke("preflight", baseline_pt)
    assert table.exit_code == 0, table.output
    assert "expected DPU subgraphs" in table.stdout and "silu" in table.stdout and "dpu-rewrite" in table.stdout
    report = json.loads(invoke("preflight", baseline_pt, "--json").stdout)
    assert report["summary"]["cpu_fallbacks_by_op"]["silu"] == 57
    assert report["sources"][0].startswith("https://docs.amd.com/")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert "is empty" in one_error_line(invoke("preflight", empty))


def test_classifier_tail_runs_on_the_dpu_and_a_silu_splits_it():
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, 2, 1), nn.SiLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4)).eval()
    rows, subgraphs = analyse(trace_ops(net, torch.rand(1, 3, 32, 32)), KV260)
    assert [(r.op, r.device) for r in rows] == [
        ("conv2d", "DPU"), ("relu", "DPU"), ("conv2d", "DPU"), ("silu", "CPU"), ("adaptive_avg_pool2d", "DPU"),
        ("flatten", "DPU"), ("linear", "DPU")]
    assert subgraphs == 2
