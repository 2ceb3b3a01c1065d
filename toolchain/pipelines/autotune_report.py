"""``report`` for an autotune run folder: per target, every artifact, its Pareto front, and the recommendation.

Built from ``autotune.json`` alone (the points were measured when the run made them). Shares the
sweep report's page template, tables and plot style (:mod:`toolchain.pipelines.reporting`).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from toolchain.pipelines.autotune import AutotunePoint, pareto
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

COLUMNS = ["ratio", "precision", "executed", "mAP50", "mAP50-95", "params", "MACs (M)", "FPS", "latency (ms)",
           "× best Ultralytics export", "Pareto", "node"]
MARKERS = {"fp32": "o", "fp16": "s", "int8": "^"}


def plot_target(points: list[AutotunePoint], target: str, recommended: AutotunePoint | None, base: dict | None,
                max_drop: float, out: Path) -> Path:
    """mAP50 against FPS for one target's artifacts (marker: precision), its front and the recommendation."""
    plt, fig, ax = figure()
    for precision, marker in MARKERS.items():
        group = [p for p in points if p.precision == precision]
        if group:
            ax.scatter([p.fps for p in group], [p.map50 for p in group], marker=marker, s=40, zorder=3,
                       label=f"{precision} (executed {group[0].executed_precision}); label: ratio")
    for p in points:
        ax.annotate(f"{p.ratio:g}", (p.fps, p.map50), fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = pareto(points)
    ax.plot([p.fps for p in front], [p.map50 for p in front], "-", color="tab:red", lw=1, zorder=2,
            label="Pareto front")
    ref = next((p for p in points if p.ratio == 0 and p.precision == "fp32"), None)
    if ref:
        ax.axhline(ref.map50 - max_drop, color="grey", lw=0.8, ls=":", label=f"unpruned FP32 mAP50 - {max_drop:g}")
    if base:
        ax.axvline(base["fps"], color="tab:orange", lw=0.8, ls="--", label=f"fastest Ultralytics export ({base['label']})")
    if recommended is not None and recommended.target == target:
        ax.scatter([recommended.fps], [recommended.map50], marker="*", s=240, color="tab:green", zorder=4,
                   label="recommended")
    ax.set_xlabel(f"FPS ({target}, inference only, batch 1)")
    ax.set_ylabel("mAP50 (val, running the artifact)")
    ax.set_title(f"Accuracy vs speed on {target}")
    ax.legend(fontsize=7, loc="lower left")
    return save_figure(plt, fig, out)


def build_autotune_report(run_dir: Path) -> ReportResult:
    """Write ``report.html`` and ``report.md`` for an autotune run folder."""
    summary = json.loads((run_dir / "autotune.json").read_text())
    points = [AutotunePoint(**p) for p in summary["points"]]
    rec = summary["recommendation"]
    recommended = AutotunePoint(**rec["point"]) if rec["point"] else None
    max_drop = summary["config"]["sweep"]["max_drop"]
    title = f"Autotune of {Path(summary['model']).name}"
    body = [f"<h1>{html.escape(title)}</h1>", "<h2>Recommended</h2>", f"<p>{html.escape(rec['reason'])}</p>"]
    md = [f"# {title}", "", "## Recommended", "", rec["reason"], ""]
    images = []
    for target in summary["config"]["targets"]:
        mine = [p for p in points if p.target == target]
        if not mine:
            continue
        refs = summary["references"].get(target) or []
        base = max(refs, key=lambda r: r["fps"]) if refs else None
        front = {(p.ratio, p.precision) for p in pareto(mine)}
        rows = [[p.ratio, p.precision, p.executed_precision, p.map50, p.map50_95, p.params, p.macs / 1e6, p.fps,
                 p.latency_ms, p.fps / base["fps"] if base else None, "yes" if (p.ratio, p.precision) in front else "",
                 p.node[:8]] for p in mine]
        highlight = next((i for i, p in enumerate(mine) if recommended and (p.target, p.ratio, p.precision) ==
                          (recommended.target, recommended.ratio, recommended.precision)), None)
        png = plot_target(mine, target, recommended, base, max_drop, run_dir / REPORT_DIR / f"autotune_{target}.png")
        images.append(str(png))
        caption = (f"{mine[0].cpu}, {mine[0].threads or 'default'} threads, batch 1, latency hint, inference only; "
                   "speedup base: " + (", ".join(f"{r['label']} {r['fps']:.1f} FPS (executed {r['executed_precision']})"
                                                 for r in refs) if refs else "not measured (--no-references)"))
        body += [f"<h2>{html.escape(target)}</h2>", html_table(COLUMNS, rows, highlight),
                 f"<p class=settings>{html.escape(caption)}</p>",
                 f'<img alt="autotune_{html.escape(target)}" src="{data_uri(png)}">']
        md += [f"## {target}", "", md_table(COLUMNS, rows), "", caption, "",
               f"![autotune_{target}]({png.relative_to(run_dir)})", ""]
    html_path, md_path = write_pages(run_dir, title, body, md)
    return ReportResult(str(html_path), str(md_path), images, len(points),
                        recommended.ratio if recommended else None, [])
