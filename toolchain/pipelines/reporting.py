"""The report toolkit: page template, tables, figures and the HTML/Markdown pair every report writes.

Why one module: the sweep and the autotune reports must look and read alike (one template, one
number format, one figure style), and each writes its page the same way (atomically, the HTML
self-contained with images as data URIs, the Markdown linking the PNGs).
"""

from __future__ import annotations

import base64
import html
from dataclasses import asdict, dataclass, field
from pathlib import Path

from toolchain.core.fileio import atomic_output
from toolchain.core.formatting import fmt

REPORT_DIR = "report"
TEMPLATE = Path(__file__).with_name("report_template.html")


@dataclass(frozen=True)
class ReportResult:
    """Where the report went and what it contains."""

    html: str
    markdown: str
    images: list[str]
    points: int
    chosen_ratio: float | None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def figure():
    """(pyplot, figure, axes) in the reports' size, drawn off-screen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(6.4, 4.0), dpi=110)


def save_figure(plt, fig, out: Path) -> Path:
    fig.tight_layout()
    with atomic_output(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out


def html_table(columns: list[str], rows: list[list], highlight: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="chosen"' if i == highlight else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def md_table(columns: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()


def write_pages(run_dir: Path, title: str, body: list[str], md: list[str]) -> tuple[Path, Path]:
    """``RUN_DIR/report.html`` (the template around ``body``) and ``RUN_DIR/report.md``, each written atomically."""
    page = TEMPLATE.read_text().replace("{{title}}", html.escape(title)).replace("{{body}}", "\n".join(body))
    html_path, md_path = run_dir / "report.html", run_dir / "report.md"
    with atomic_output(html_path) as tmp:
        tmp.write_text(page)
    with atomic_output(md_path) as tmp:
        tmp.write_text("\n".join(md))
    return html_path, md_path
