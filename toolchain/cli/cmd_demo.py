"""``edgeprune demo``: the whole pipeline on the built-in synthetic data set."""

from __future__ import annotations

import click

from toolchain.cli.opts import json_option, open_ratio
from toolchain.cli.render import console, human_bytes, print_json, stdout_to_stderr, table


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default="demo-run", show_default=True,
              help="Folder for every artifact; rerunning skips finished steps.")
@click.option("--ratio", type=float, default=0.3, show_default=True, callback=open_ratio,
              help="Structured pruning ratio.")
@click.option("--fast", is_flag=True, help="3 fine-tuning epochs and short benches (a smoke run; accuracy is not "
                                           "recovered).")
@json_option
def demo(out, ratio, fast, as_json) -> None:
    """Synthetic data → baseline → prune → fine-tune → deploy (OpenVINO, ONNX) → bench → sweep → HTML report.

    Every step is a normal edgeprune command run with --json; a rerun skips finished steps.
    """
    from toolchain.demo import run_demo

    err = console(stderr=True)
    with stdout_to_stderr(as_json):
        result = run_demo(out, fast=fast, ratio=ratio, log=lambda msg: err.print(f"[bold]demo[/bold] {msg}"))
    if as_json:
        print_json(result)
        return
    rows = [[r["model"], r["runtime"], r["precision"], f"{r['params']:,}", f"{r['macs'] / 1e6:,.1f} M",
             human_bytes(r["artifact_bytes"]), f"{r['map50_95']:.4f}", f"{r['map50_95_drop'] * 100:+.2f}",
             f"{r['fps']:.1f}", f"{r['speedup']:.2f}x"] for r in result.table]
    console().print(table(
        "edgeprune demo", ["model", "runtime", "precision stored / executed", "params", "MACs", "size", "mAP50-95",
                           "drop (pts)", "FPS", "speedup"], rows,
        caption="FPS: inference only, batch 1, latency hint, this CPU; speedup vs the unpruned FP32 model executed "
                "in f32; mAP50-95 of each artifact run by its runtime on the synthetic val set",
    ))
    streams = result.streams[-1]["extra"] if result.streams else None
    if streams:
        console().print(
            f"4 streams spliced into {streams['spliced_input'][0]}: {streams['spliced']['aggregate_fps']:.1f} FPS "
            f"aggregate vs {streams['separate']['aggregate_fps']:.1f} FPS as 4 separate "
            f"{streams['separate_input'][0]} inferences (pruned INT8 OpenVINO, decode and NMS included)"
        )
    if result.report:
        console().print(f"report: {result.report.get('html')}")
    console().print(f"artifacts and JSON results in {result.out}")
