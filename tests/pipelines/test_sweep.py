"""The sweep finds a knee, resumes after an interruption, and its report renders in Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from toolchain.pipelines import sweep as sweep_mod
from toolchain.pipelines.executors import ray_executor
from toolchain.pipelines.sweep import SweepConfig, SweepError, SweepPoint, choose, parse_ratios, read_points, refine_ratio


def _cfg(data, **kw) -> SweepConfig:
    base = dict(data=str(data), ratios=(0.02, 0.1), method="l1", round_to=None, target="onnx", imgsz=256,
                max_drop=0.1, bench_iterations=10, batch=16)
    base.update(kw)
    return SweepConfig(**base)


def _point(ratio, map50, fps=10.0) -> SweepPoint:
    return SweepPoint(ratio=ratio, key="k", model="m.pt", precision=0.5, recall=0.5, map50=map50, map50_95=map50 / 2,
                      params=1000, macs=int(1e6 * (1 - ratio)), file_bytes=1, latency_ms=1000 / fps, fps=fps,
                      target="onnx", seconds=1.0, finished="t")


def test_parse_ratios():
    assert parse_ratios("0.1:0.9:0.1") == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    assert parse_ratios("0.5,0.7") == (0.5, 0.7)
    with pytest.raises(SweepError):
        parse_ratios("0.1:0.9")


def test_choose_and_refine_follow_seed_002():
    # The seed's YOLOv3 table: 0.89 keeps mAP, 0.9 collapses; the next probe is between them.
    points = [_point(0.0, 0.63), _point(0.8, 0.626, fps=10.5), _point(0.88, 0.621, fps=11), _point(0.9, 0.484, 30)]
    choice = choose(points, max_drop=0.02)
    assert choice.ratio == 0.88 and "11.0 FPS vs 10.0" in choice.reason
    assert refine_ratio(points, 0.02) == 0.89
    nothing = choose([_point(0.0, 0.6), _point(0.5, 0.1)], 0.02)
    assert nothing.ratio is None and "ratios below 0.5" in nothing.reason and "--finetune-epochs" in nothing.reason


def test_choice_is_the_fastest_good_point_and_never_slower_than_the_baseline():
    """Fake measurements where the largest good ratio is slower (a channel count the device runs badly)."""
    points = [_point(0.0, 0.60, fps=100), _point(0.3, 0.595, fps=140), _point(0.5, 0.59, fps=95),
              _point(0.6, 0.40, fps=200)]
    choice = choose(points, max_drop=0.02)
    assert choice.ratio == 0.3 and "ratio 0.5 kept the accuracy but ran no faster" in choice.reason
    slow = [_point(0.0, 0.60, fps=100), _point(0.3, 0.60, fps=99), _point(0.5, 0.595, fps=90)]
    none = choose(slow, max_drop=0.02)
    assert none.ratio is None and "larger ratios than 0.5" in none.reason


def test_pareto_front_is_over_accuracy_and_fps():
    """A point both slower and less accurate than another is off the front, whatever its MACs."""
    from toolchain.pipelines.report import pareto_front

    points = [_point(0.0, 0.60, fps=100), _point(0.3, 0.59, fps=140), _point(0.5, 0.55, fps=120),
              _point(0.6, 0.40, fps=200), _point(0.7, 0.30, fps=190)]
    assert [p.ratio for p in pareto_front(points)] == [0.0, 0.3, 0.6]  # by FPS; 0.5 and 0.7 are dominated


def test_settings_key_separates_iterative_from_one_shot(baseline_pt, small_data):
    assert _cfg(small_data).settings_key(str(baseline_pt)) != _cfg(small_data, steps=3).settings_key(str(baseline_pt))
    assert _cfg(small_data).settings_key(str(baseline_pt)) == _cfg(small_data, ratios=(0.5,)).settings_key(str(baseline_pt))
    keys = {_cfg(small_data, head_ratio=h).settings_key(str(baseline_pt)) for h in (None, 0.0, 0.3)}
    assert len(keys) == 3  # a head share changes every point


def test_head_ratio_reaches_every_point(baseline_pt, small_data, tmp_path):
    """A sweep point is pruned with the head's own share: 0 leaves the Detect head's convs whole."""
    from toolchain.models.contract import heads
    from toolchain.models.loading import load_model
    from toolchain.models.sources import source_for

    def head_channels(path) -> int:
        return sum(m.out_channels for h in heads(load_model(path).model) for m in h.modules()
                   if isinstance(m, torch.nn.Conv2d))

    source = source_for(str(baseline_pt))
    widths = {}
    for head in (None, 0.0):
        cfg = source.fit_sweep(Path(baseline_pt), _cfg(small_data, head_ratio=head, round_to=8))
        here = tmp_path / f"h{head}"
        here.mkdir()
        model, _ = source.prune_point(Path(baseline_pt), here, 0.5, cfg)
        widths[head] = head_channels(model)
    assert widths[0.0] == head_channels(baseline_pt) > widths[None]
    with pytest.raises(SweepError, match="--head-ratio"):
        sweep_mod.sweep(str(baseline_pt), tmp_path / "bad", _cfg(small_data, head_ratio=1.0))


@pytest.fixture(scope="module")
def knee_run(baseline_pt, small_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("knee")
    result = sweep_mod.sweep(str(baseline_pt), run_dir, _cfg(small_data, refine=True, refine_steps=1))
    return run_dir, result


def test_sweep_finds_a_knee(knee_run):
    run_dir, result = knee_run
    ratios = [p.ratio for p in result.points]
    assert ratios[0] == 0.0 and 0.02 in ratios and 0.1 in ratios
    assert len(ratios) == 4, f"refine should add one bisection point, got {ratios}"
    base = result.baseline()
    assert base.map50 > 0.9
    good = [p for p in result.points if p.ratio > 0 and base.map50 - p.map50 <= 0.1]
    bad = [p for p in result.points if base.map50 - p.map50 > 0.1]
    assert good and bad, "the grid should straddle the cliff"
    faster = [p for p in good if p.fps > base.fps]  # the choice: the fastest good point, never a slower one
    assert result.choice.ratio == (max(faster, key=lambda p: p.fps).ratio if faster else None), result.choice.reason
    if result.choice.ratio is not None:
        chosen = next(p for p in result.points if p.ratio == result.choice.ratio)
        assert chosen.macs < base.macs and chosen.params < base.params and chosen.fps > base.fps
    assert len(read_points(run_dir)) == 4
    assert json.loads((run_dir / "sweep.json").read_text())["choice"]["ratio"] == result.choice.ratio


def test_interrupted_sweep_resumes_without_redoing_points(baseline_pt, small_data, tmp_path, monkeypatch):
    cfg = _cfg(small_data)

    class Stop(Exception):
        pass

    seen = []

    def stop_after_two(point):
        seen.append(point.ratio)
        if len(seen) == 2:
            raise Stop

    with pytest.raises(Stop):
        sweep_mod.sweep(str(baseline_pt), tmp_path, cfg, on_point=stop_after_two)
    first = read_points(tmp_path)
    assert [p.ratio for p in first] == [0.0, 0.02]

    computed = []
    real_run_point = sweep_mod.run_point
    monkeypatch.setattr(sweep_mod, "run_point", lambda m, r, *a: computed.append(r) or real_run_point(m, r, *a))
    result = sweep_mod.sweep(str(baseline_pt), tmp_path, cfg)
    assert computed == [0.1]
    assert (result.resumed, result.computed) == (2, 1)
    again = read_points(tmp_path)
    assert [p.finished for p in again[:2]] == [p.finished for p in first]
    assert len(again) == 3


def _cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess: --json must leave stdout to the JSON document (fd-level redirect)."""
    return subprocess.run([sys.executable, "-m", "toolchain.cli.main", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})


def _find_chromium():
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def test_report_is_self_contained_and_renders(knee_run, tmp_path):
    from PIL import Image

    import torch

    from toolchain.models.sparsity import plot_histograms

    run_dir, result = knee_run
    # sparsify output kept inside the run folder is picked up by the report
    plot_histograms([(0, torch.rand(500) + 0.5), (1, torch.rand(500) * 0.3)], run_dir / "sparsify")
    proc = _cli("report", run_dir.resolve(), "--json", cwd=tmp_path)  # from another folder, by absolute path
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    page = (run_dir / "report.html").read_text()
    assert page.count('<img alt="') == len(report["images"]) >= 5
    assert page.count('src="data:image/png;base64,') == len(report["images"])
    for name in ("PR_curve", "F1_curve", "map_vs_fps", "map_vs_ratio", "plateau_and_gamma", "per_class_ap",
                 "gamma_hist_epochs_000-001"):
        assert f'<img alt="{name}"' in page
    for p in result.points:
        assert f"<tr><td>{p.ratio:.4g}</td>" in page or f'<tr class="chosen"><td>{p.ratio:.4g}</td>' in page
    assert ('<tr class="chosen">' in page) == (result.choice.ratio is not None)
    cpu = json.loads((next(run_dir.rglob("bench.jsonl"))).read_text().splitlines()[0])["cpu"]
    assert f"FPS measured on {cpu}, onnxruntime" in page and "threads, latency hint, batch 1" in page
    # one bench line per point and per Ultralytics export of the unpruned model (the speedup base), from bench.jsonl
    assert page.count("<td>onnxruntime</td>") == len(result.points) + len(result.references)
    assert [r["label"] for r in result.references] == [f"Ultralytics onnx {p}" for p in ("FP32", "FP16", "INT8")]
    assert "× best Ultralytics export" in page and "speedups are against the fastest" in page
    assert page.count("/onnx</td><td>onnx</td><td>fp32</td>") == len(result.points)  # deploy.json per point
    md = (run_dir / "report.md").read_text()
    assert "| ratio | P | R | mAP50" in md and md.count("\n| ") >= len(result.points) + 1

    chromium = _find_chromium()
    if chromium is None:
        pytest.skip("chromium not found: install Debian's chromium (apt-get install chromium) to render the report")
    shot = tmp_path / "report.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
                    (run_dir / "report.html").as_uri()], check=True, capture_output=True, timeout=120)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2000)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200, "the screenshot is (nearly) a single colour"
    # Plot pixels (coloured lines, the viridis scatter) must be on screen, not just text on white.
    saturated = sum(n for n, (r, g, b) in colours if max(r, g, b) - min(r, g, b) > 80)
    assert saturated > 2000


@pytest.mark.full  # 35 s; make test runs Ray through autotune's real-cluster test
def test_ray_executor_runs_points_as_tasks(baseline_pt, small_data, tmp_path):
    ray = pytest.importorskip("ray")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        result = sweep_mod.sweep(str(baseline_pt), tmp_path, _cfg(small_data, ratios=(0.02,)),
                                 executor=ray_executor())
    finally:
        ray.shutdown()
    assert [p.ratio for p in result.points] == [0.0, 0.02] and result.computed == 2
    assert len(read_points(tmp_path)) == 2


def test_sweep_cli_resumes_and_prints_the_table(knee_run, baseline_pt, small_data):
    run_dir, result = knee_run
    args = ["sweep", baseline_pt, "--data", small_data, "--ratios", "0.02,0.1", "--round-to", 1, "--target", "onnx",
            "--max-drop", 0.1, "--bench-iterations", 10, "--refine", "--refine-steps", 1, "--out", run_dir]
    proc = _cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert f"optimal pruning point: {result.choice.ratio}" in proc.stdout and "0 points measured, 4 resumed" in proc.stdout
    proc = _cli(*args[:5], "1.5:2:0.1", *args[6:])
    assert proc.returncode == 2 and "between 0 and 1" in proc.stderr
