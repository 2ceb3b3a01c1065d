"""``edgeprune report``: one self-contained HTML page (and a Markdown twin) for a sweep run folder.

Why self-contained: reports are mailed and attached to tickets; an HTML file whose images
are base64 data URIs survives that, a folder of PNGs does not. The Markdown version links the
same PNGs (written to ``RUN_DIR/report/``) for reading in a repository.

PR and F1 curves are drawn here with matplotlib from the Ultralytics validator's own curve
arrays (``metrics.box.curves_results``) instead of ``val(plots=True)``: the validator's
sample-image plots look for Arial.ttf and try to download it, and edgeprune never downloads.
"""

from __future__ import annotations

import html
import json
from dataclasses import replace
from pathlib import Path

from targets.artifacts import read_deploy_record
from targets.ultralytics_exports import fastest
from toolchain.core.device import open_yolo
from toolchain.core.errors import InputFileError
from toolchain.core.jsonl import read_records
from toolchain.models.sources import source_for
from toolchain.pipelines.autotune_report import build_autotune_report
from toolchain.pipelines.reporting import (
    REPORT_DIR,
    ReportResult,
    data_uri,
    figure,
    html_table,
    md_table,
    save_figure,
    write_pages,
)
from toolchain.pipelines.sweep import BASELINE_RATIO, SweepPoint, choose, read_points

COLUMNS = ["ratio", "P", "R", "mAP50", "mAP50-95", "params", "MACs (M)", "size (MB)", "latency (ms)", "FPS",
           "× best Ultralytics export"]


def table_rows(points: list[SweepPoint], base_fps: float | None = None) -> list[list]:
    """The sweep table, one row per point, numbers still numbers; the speedup column is FPS / ``base_fps``.

    ``base_fps`` is the fastest Ultralytics export of the unpruned model (None: not measured, shown as "-").
    """
    return [[p.ratio, p.precision, p.recall, p.map50, p.map50_95, p.params, p.macs / 1e6, p.file_bytes / 2**20,
             p.latency_ms, p.fps, p.fps / base_fps if base_fps else None] for p in points]


def pareto_front(points: list[SweepPoint]) -> list[SweepPoint]:
    """Points no other point beats on both accuracy (mAP50, what ``--max-drop`` bounds) and FPS, by FPS.

    These are the only points worth deploying: any other is both slower and less accurate than one of them.
    """
    front = [p for p in points
             if not any(q.map50 >= p.map50 and q.fps >= p.fps and (q.map50, q.fps) != (p.map50, p.fps)
                        for q in points)]
    return sorted(front, key=lambda p: p.fps)


def plot_map(points: list[SweepPoint], max_drop: float, chosen: float | None, out: Path) -> Path:
    plt, fig, ax = figure()
    xs = [p.ratio for p in points]
    ax.plot(xs, [p.map50 for p in points], "o-", label="mAP50")
    ax.plot(xs, [p.map50_95 for p in points], "s--", label="mAP50-95")
    base = next((p for p in points if p.ratio == BASELINE_RATIO), None)
    if base:
        ax.axhline(base.map50 - max_drop, color="grey", lw=0.8, ls=":", label=f"baseline mAP50 - {max_drop}")
    if chosen is not None:
        ax.axvline(chosen, color="tab:green", lw=1.2, label=f"chosen ratio {chosen:g}")
    ax.set_xlabel("pruning ratio")
    ax.set_ylabel("mAP")
    ax.set_title("Accuracy vs pruning ratio")
    ax.legend(fontsize=8)
    return save_figure(plt, fig, out)


def plot_plateau(points: list[SweepPoint], gammas, method: str, out: Path) -> Path:
    """mAP50-95 against the ratio beside the swept model's |BatchNorm gamma| histogram.

    Why together: after sparsity training the share of gammas at zero is where the plateau should
    end (pruning dead channels costs nothing) and the cliff begin; on a dense model there is no
    such share, and ``--method bn`` prunes live channels from the first ratio on.
    """
    import numpy as np

    plt, fig, ax = figure()
    fig.set_size_inches(9.6, 4.0)
    ax.remove()
    left, right = fig.subplots(1, 2)
    xs = [p.ratio for p in points]
    left.plot(xs, [p.map50_95 for p in points], "s-", label="mAP50-95, no fine-tuning")
    g = np.asarray(gammas, dtype=float)
    dead = float((g < 1e-2).mean()) if g.size else 0.0
    if dead:
        left.axvline(dead, color="tab:red", lw=1, ls="--", label=f"share of gamma < 0.01 ({dead:.0%})")
    left.set_xlabel(f"pruning ratio ({method})")
    left.set_ylabel("mAP50-95")
    left.set_title("Plateau, then cliff")
    left.legend(fontsize=8)
    right.hist(g, bins=80, color="tab:blue")
    right.set_yscale("log")
    right.set_xlabel("|BatchNorm gamma| of the swept model")
    right.set_ylabel("channels")
    right.set_title(f"{dead:.1%} of {g.size:,} gammas below 0.01")
    return save_figure(plt, fig, out)


def plot_accuracy_fps(points: list[SweepPoint], max_drop: float, chosen: float | None, base_fps: float | None,
                      base_label: str | None, out: Path) -> Path:
    """FPS against mAP50 for every point, the Pareto front over both, and the lines the choice is made by."""
    plt, fig, ax = figure()
    cloud = ax.scatter([p.fps for p in points], [p.map50 for p in points], c=[p.macs / 1e6 for p in points],
                       cmap="viridis", zorder=3, label="sweep point (label: pruning ratio)")
    fig.colorbar(cloud, ax=ax, label="MACs (M)")
    for p in points:
        ax.annotate(f"{p.ratio:g}", (p.fps, p.map50), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(points)
    ax.plot([p.fps for p in front], [p.map50 for p in front], "-", color="tab:red", lw=1, zorder=2,
            label="Pareto front (no point both faster and more accurate)")
    base = next((p for p in points if p.ratio == BASELINE_RATIO), None)
    if base:
        ax.axhline(base.map50 - max_drop, color="grey", lw=0.8, ls=":", label=f"unpruned mAP50 - {max_drop:g} (max drop)")
    if base_fps:
        ax.axvline(base_fps, color="tab:orange", lw=0.8, ls="--",
                   label=f"fastest Ultralytics export, unpruned ({base_label or 'measured'})")
    pick = next((p for p in points if p.ratio == chosen), None) if chosen is not None else None
    if pick:
        ax.scatter([pick.fps], [pick.map50], marker="*", s=220, color="tab:green", zorder=4,
                   label=f"chosen: ratio {pick.ratio:g}")
    ax.set_xlabel(f"FPS ({points[0].target}, inference only, batch 1)")
    ax.set_ylabel("mAP50 (val)")
    ax.set_title("Accuracy vs speed")
    ax.legend(fontsize=7, loc="lower left")
    return save_figure(plt, fig, out)


def plot_per_class(point: SweepPoint, out: Path) -> Path:
    plt, fig, ax = figure()
    names = [c["name"] for c in point.per_class]
    ax.bar(range(len(names)), [c["map50"] for c in point.per_class], color="#3b7dd8", label="AP50")
    ax.bar(range(len(names)), [c["map50_95"] for c in point.per_class], color="#f0a030", width=0.5, label="AP50-95")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Per-class AP at ratio {point.ratio:g}")
    ax.legend(fontsize=8)
    return save_figure(plt, fig, out)


def validator_curves(model: str, data: str, imgsz: int, out_dir: Path) -> list:
    """``curves_results`` of the Ultralytics validator (plots off: nothing is drawn or downloaded)."""

    metrics = open_yolo(model).val(data=str(data), imgsz=imgsz, device="cpu", plots=False, verbose=False,
                              project=str(out_dir), name="val", exist_ok=True, workers=0)
    return metrics.box.curves_results


def plot_curve(curve, names: list[str], out: Path, title: str) -> Path:
    """One of the validator's curves: x, per-class y (nc, 1000), x label, y label."""
    import numpy as np

    x, ys, xlabel, ylabel = curve
    plt, fig, ax = figure()
    ys = np.asarray(ys)
    for i, y in enumerate(ys):
        ax.plot(x, y, lw=1, label=names[i] if i < len(names) else str(i))
    ax.plot(x, ys.mean(0), lw=2.5, color="k", label="all classes")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(plt, fig, out)


def _deploy_rows(run_dir: Path) -> list[list]:
    rows = []

    for path in sorted(run_dir.rglob("deploy.json")):
        rec = read_deploy_record(path.parent)
        rows.append([str(path.parent.relative_to(run_dir)), rec.get("target"), rec.get("precision"),
                     rec.get("artifact_bytes"), rec.get("fidelity", {}).get("max_abs_diff")])
    return rows


def _bench_rows(run_dir: Path) -> list[list]:
    rows = []
    for path in sorted(run_dir.rglob("bench.jsonl")):
        for rec in read_records(path, dict, "a bench record"):
            latency = rec.get("latency") or {}
            rows.append([str(path.parent.relative_to(run_dir)), rec.get("backend"), rec.get("executed_precision"),
                         rec.get("iterations"), latency.get("median_ms"), latency.get("p90_ms"),
                         rec.get("throughput_fps")])
    return rows


def _device_line(run_dir: Path) -> str:
    """Where and how every FPS of the run was measured, from the bench records the points wrote."""
    records = [r for path in sorted(run_dir.rglob("bench.jsonl")) for r in read_records(path, dict, "a bench record")]
    if not records:
        return "No bench record in the run folder: device unknown."
    seen = {(r.get("cpu"), r.get("backend"), r.get("backend_version"), r.get("executed_precision"), r.get("threads"),
             r.get("hint"), r.get("batch")) for r in records}
    parts = [f"{cpu}, {backend} {version}, executed {precision}, {threads} threads, {hint} hint, batch {batch}"
             for cpu, backend, version, precision, threads, hint, batch in sorted(seen, key=str)]
    import platform

    return (f"FPS measured on {'; '.join(parts)}; inference only (no pre/post-processing); "
            f"Python {platform.python_version()}.")


def _read_summary(path: Path) -> dict:
    """sweep.json, or an error naming it and where it stops being a sweep summary."""
    try:
        summary = json.loads(path.read_text(errors="replace"))
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); rerun the sweep with the "
                             "same --out to rewrite it") from None
    missing = [k for k in ("config", "points") if not isinstance(summary, dict) or k not in summary]
    if missing or not isinstance(summary.get("config"), dict) or "max_drop" not in summary["config"]:
        raise InputFileError(f"{path} is not an edgeprune sweep summary (missing {', '.join(missing) or 'config'}); "
                             "rerun the sweep with the same --out to rewrite it")
    return summary


def _later_stages(summary: dict, base_fps: float | None) -> list[tuple[str, list[str], list[list]]]:
    """Tables for what the sweep did after the grid: residual units removed, the chosen model fine-tuned."""
    stages = []
    shortcut_points = [SweepPoint(**p) for p in summary.get("shortcut_points") or []]
    if shortcut_points:
        rows = [[p.shortcuts] + row[1:] for p, row in zip(shortcut_points, table_rows(shortcut_points, base_fps))]
        stages.append((f"Residual units removed at ratio {shortcut_points[0].ratio:g}", ["shortcuts"] + COLUMNS[1:],
                       rows))
    tuned = summary.get("finetuned")
    if tuned:
        stages.append(("Chosen model fine-tuned", ["ratio", "shortcuts", "epochs", "mAP50 before", "mAP50",
                                                   "mAP50-95 before", "mAP50-95", "model"],
                       [[tuned["ratio"], tuned["shortcuts"], tuned["epochs"], tuned["before_map50"], tuned["map50"],
                         tuned["before_map50_95"], tuned["map50_95"], tuned["model"]]]))
    return stages


def build_report(run_dir: str | Path, curves: bool = True, progress=None) -> ReportResult:
    """Write ``RUN_DIR/report.html`` and ``RUN_DIR/report.md`` from what the run folder holds.

    Args:
        run_dir: a ``sweep`` run folder (``sweep.json``), possibly holding sparsify output, or an
            ``autotune`` run folder (``autotune.json``: :mod:`toolchain.pipelines.autotune_report`).
        curves: run the validator on the chosen model for PR and F1 curves.
        progress: optional ``progress(message)``.

    Raises:
        InputFileError: ``run_dir`` has no sweep results.
    """
    run_dir = Path(run_dir).resolve()
    summary_path = run_dir / "sweep.json"
    if not summary_path.exists() and (run_dir / "autotune.json").exists():
        return build_autotune_report(run_dir)
    if not summary_path.exists():
        raise InputFileError(f"{run_dir} has no sweep.json; run `edgeprune sweep ... --out {run_dir}` first")
    summary = _read_summary(summary_path)
    cfg = summary["config"]
    key = summary["points"][0]["key"] if summary["points"] else None
    points = sorted(read_points(run_dir, key), key=lambda p: p.ratio)
    points = list({p.ratio: p for p in points}.values())
    choice = choose(points, cfg["max_drop"])
    img_dir = run_dir / REPORT_DIR
    notes: list[str] = []
    sections: list[tuple[str, list[Path]]] = []

    if progress:
        progress("plotting")

    best = fastest(summary.get("references") or [])
    sections.append(("Accuracy and speed", [
        plot_map(points, cfg["max_drop"], choice.ratio, img_dir / "map_vs_ratio.png"),
        plot_accuracy_fps(points, cfg["max_drop"], choice.ratio, best["fps"] if best else None,
                          best.get("label") if best else None, img_dir / "map_vs_fps.png")]))
    swept = summary["model"]
    if Path(swept).exists():
        found = source_for(swept).bn_gammas(Path(swept), cfg.get("weights"))
        if found is not None:
            sections[-1][1].append(plot_plateau(points, found.numpy(), cfg.get("method", "l1"),
                                                img_dir / "plateau_and_gamma.png"))
    hists = sorted(run_dir.rglob("gamma_hist_*.png"))
    if hists:
        sections.append(("BatchNorm γ after sparsity training", hists))
    chosen = next((p for p in points if p.ratio == choice.ratio), None) or next(
        (p for p in points if p.ratio == BASELINE_RATIO), None)
    if chosen and chosen.per_class:
        images = [plot_per_class(chosen, img_dir / "per_class_ap.png")]
        if curves and not source_for(chosen.model).native_validator:
            notes.append("PR/F1 curves come from the Ultralytics validator, which runs .pt checkpoints only; "
                         f"omitted for {Path(chosen.model).name}")
        elif curves:
            if progress:
                progress(f"validating the ratio {chosen.ratio:g} model for PR/F1 curves")
            names = [c["name"] for c in chosen.per_class]
            res = validator_curves(chosen.model, cfg["data"], cfg["imgsz"], img_dir)
            images.append(plot_curve(res[0], names, img_dir / "PR_curve.png", f"Precision-recall, ratio {chosen.ratio:g}"))
            images.append(plot_curve(res[1], names, img_dir / "F1_curve.png", f"F1 vs confidence, ratio {chosen.ratio:g}"))
        sections.append((f"Model at ratio {chosen.ratio:g}", images))
    sparsity = sorted(run_dir.rglob("sparsity.json"))
    if not hists and not sparsity:
        notes.append("no sparsify output in the run folder (γ histograms omitted)")

    references = summary.get("references") or []
    rows = table_rows(points, best["fps"] if best else None)
    if best:
        notes.append("speedups are against the fastest of Ultralytics' own exports of the unpruned model, measured in "
                     "the same run with the same settings: " + ", ".join(
                         f"{r['label']} {r['fps']:.1f} FPS (executed {r['executed_precision']})" for r in references)
                     + f"; base: {best['label']}")
    else:
        notes += summary.get("notes") or []
        notes.append("no Ultralytics export of this model was measured (Ultralytics cannot export it to this target): "
                     "the speedup column is empty")
    highlight = next((i for i, p in enumerate(points) if p.ratio == choice.ratio), None)
    deploy_rows, bench_rows = _deploy_rows(run_dir), _bench_rows(run_dir)
    deploy_cols = ["folder", "target", "precision", "artifact bytes", "max |Δ| vs torch"]
    bench_cols = ["folder", "backend", "executed", "runs", "median ms", "p90 ms", "FPS"]
    shown = {**cfg, "round_to": cfg.get("round_to") or "1 (no rounding)"} if "round_to" in cfg else cfg
    settings = ", ".join(f"{k}={v}" for k, v in shown.items())
    device = _device_line(run_dir)
    settings += f". {device}"
    title = f"Pruning sweep of {Path(summary['model']).name}"

    stages = _later_stages(summary, best["fps"] if best else None)
    final = summary.get("choice") or {}
    if stages and final.get("ratio") == choice.ratio:  # the shortcut stage refined the grid's choice
        choice = replace(choice, reason=final["reason"])
    body = [f"<h1>{html.escape(title)}</h1>", f"<p class=settings>{html.escape(settings)}</p>",
            f"<h2>Optimal pruning point</h2><p><b>{html.escape(str(choice.ratio))}</b>: {html.escape(choice.reason)}</p>",
            "<h2>Sweep</h2>", html_table(COLUMNS, rows, highlight)]
    md = [f"# {title}", "", f"Settings: {settings}", "", "## Optimal pruning point", "",
          f"**{choice.ratio}**: {choice.reason}", "", "## Sweep", "", md_table(COLUMNS, rows), ""]
    for heading, columns, stage_rows in stages:
        body += [f"<h2>{html.escape(heading)}</h2>", html_table(columns, stage_rows)]
        md += [f"## {heading}", "", md_table(columns, stage_rows), ""]
    for heading, images in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        body += [f'<img alt="{html.escape(p.stem)}" src="{data_uri(p)}">' for p in images]
        md += [f"## {heading}", ""] + [f"![{p.stem}]({p.relative_to(run_dir)})" for p in images] + [""]
    body += ["<h2>Deployments</h2>", html_table(deploy_cols, deploy_rows), "<h2>Benchmarks</h2>",
             html_table(bench_cols, bench_rows)]
    md += ["## Deployments", "", md_table(deploy_cols, deploy_rows), "", "## Benchmarks", "",
           md_table(bench_cols, bench_rows), ""]
    if notes:
        body.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]

    html_path, md_path = write_pages(run_dir, title, body, md)
    images = [str(p) for _, imgs in sections for p in imgs]
    return ReportResult(str(html_path), str(md_path), images, len(points), choice.ratio, notes)
