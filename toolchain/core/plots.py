"""Charts with matplotlib (headless), written atomically."""

from __future__ import annotations

from pathlib import Path

from toolchain.core.fileio import atomic_output


def bar_chart(labels: list[str], values: list[float], ylabel: str, out: str | Path, title: str = "") -> Path:
    """A labelled bar chart with value annotations and ratios against the first bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(labels)), 3.6), dpi=120)
    short = [Path(label).name or label for label in labels]
    bars = ax.bar(range(len(values)), values, color="#3b7dd8")
    for bar, value in zip(bars, values):
        ax.annotate(f"{value:.1f}\n({value / values[0]:.2f}x)", (bar.get_x() + bar.get_width() / 2, value),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(values)), short, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, max(values) * 1.25)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_output(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(out)
