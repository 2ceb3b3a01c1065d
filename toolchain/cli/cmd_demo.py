"""``edgeprune demo``: ``optimize`` on the built-in synthetic data set, then the 4-stream splice."""

from __future__ import annotations

import click

from edgeprune.demo import DEMO_BUDGET, DEMO_RATIO, FAST_BUDGET, FULL_BUDGET, run_demo
from toolchain.cli.opts import OutputPath, json_option, open_ratio
from toolchain.cli.render import console, print_json, stdout_to_stderr


@click.command()
@click.option("--out", type=OutputPath("dir"), default="demo-run", show_default=True,
              help="Folder for every artifact; rerunning skips finished steps.")
@click.option("--ratio", type=float, default=DEMO_RATIO, show_default=True, callback=open_ratio,
              help="Channels removed (sparsified first, then pruned by BatchNorm gamma).")
@click.option("--full", "budget", flag_value=FULL_BUDGET,
              help=f"The long recipe: {FULL_BUDGET} training epochs (about 40 minutes on 2 cores).")
@click.option("--fast", "budget", flag_value=FAST_BUDGET,
              help=f"A smoke run: {FAST_BUDGET} epochs and short benches (accuracy is not recovered).")
@click.option("--budget-epochs", "budget", type=click.IntRange(min=2), default=DEMO_BUDGET, show_default=True,
              help="Training epochs added in all (sparsify + fine-tune).")
@json_option
def demo(out, ratio, budget, as_json) -> None:
    """Synthetic data → optimize the committed 256 px baseline → four 416 streams spliced into one 832 frame.

    optimize: sparsify (the channels --ratio removes are ramped to zero while the rest trains) →
    prune --method bn → fine-tune distilled from the baseline → OpenVINO FP32 and INT8 IRs →
    measured against Ultralytics' own FP32/FP16/INT8 exports of the baseline in the same run
    (8 minutes measured on 2 quiet CPU cores, 2026-12-05). A rerun skips finished steps.
    """
    from toolchain.cli.cmd_optimize import render

    err = console(stderr=True)
    with stdout_to_stderr(as_json):
        result = run_demo(out, ratio=ratio, budget=budget, fast=budget == FAST_BUDGET,
                          log=lambda msg: err.print(f"[bold]demo[/bold] {msg}"))
    if as_json:
        print_json(result)
        return
    render(result.optimize)
    streams = result.streams[-1].extra if result.streams else None
    if streams:
        console().print(
            f"4 streams spliced into {streams['spliced_input'][0]}: {streams['spliced']['aggregate_fps']:.1f} FPS "
            f"aggregate vs {streams['separate']['aggregate_fps']:.1f} FPS as 4 separate "
            f"{streams['separate_input'][0]} inferences (pruned {result.spliced['precision'].upper()} IR, "
            "the faster in the comparison; decode and NMS included)"
        )
    console().print(f"artifacts and JSON results in {result.out}")
