"""``edgeprune demo``: the whole pipeline on the built-in synthetic data set."""

from __future__ import annotations

import click

from toolchain.cli.opts import json_option
from toolchain.cli.render import console, human_bytes, print_json, stdout_to_stderr, table


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default="demo-run", show_default=True,
              help="Folder for every artifact; rerunning skips finished steps.")
@click.option("--fast", is_flag=True, help="Fewer fine-tuning epochs (a smoke run, accuracy not recovered).")
@json_option
def demo(out, fast, as_json) -> None:
    """Run synthetic data → baseline → prune → fine-tune → evaluate, each step a normal edgeprune command."""
    from toolchain.demo import run_demo

    err = console(stderr=True)
    with stdout_to_stderr(as_json):
        result = run_demo(out, fast=fast, log=lambda msg: err.print(f"[bold]demo[/bold] {msg}"))
    if as_json:
        print_json(result)
        return
    rows = [[r["model"], f"{r['params']:,}", f"{r['macs'] / 1e6:,.1f} M", human_bytes(r["file_bytes"]),
             r["map50_95"], r["map50"], r["latency_ms"], "-" if r["speedup"] is None else f"{r['speedup']:.2f}x"]
            for r in result.table]
    console().print(table(
        "edgeprune demo", ["model", "params", "MACs", "size", "mAP50-95", "mAP50", "latency ms", "speedup"], rows,
        caption=f"latency: torch FP32 on this CPU, batch 1, inference only; artifacts in {result.out}",
    ))
