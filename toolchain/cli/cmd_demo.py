"""``edgeprune demo``: the whole pipeline on the built-in synthetic data set."""

from __future__ import annotations

import click

from toolchain.cli.opts import OutputPath, json_option, open_ratio
from toolchain.cli.render import console, human_bytes, print_json, stdout_to_stderr, table
from toolchain.demo import DEMO_RATIO, FINETUNE_EPOCHS, SPARSIFY_EPOCHS, run_demo


@click.command()
@click.option("--out", type=OutputPath("dir"), default="demo-run", show_default=True,
              help="Folder for every artifact; rerunning skips finished steps.")
@click.option("--ratio", type=float, default=DEMO_RATIO, show_default=True, callback=open_ratio,
              help="Structured pruning ratio (prune --method bn on the sparsified model).")
@click.option("--fast", is_flag=True, help=f"2 sparsity and 3 fine-tuning epochs instead of {SPARSIFY_EPOCHS} and "
                                           f"{FINETUNE_EPOCHS} and short benches (a smoke run; "
                                           "accuracy is not recovered).")
@json_option
def demo(out, ratio, fast, as_json) -> None:
    """Synthetic data → sparsify → prune → fine-tune → deploy (OpenVINO, ONNX) → bench → sweep → HTML report.

    The recipe: the committed 256 px baseline sparsity-trained, pruned at --ratio where BatchNorm gamma is
    small, fine-tuned long, distilled from the sparsified model (about 35 minutes on 2 quiet CPU cores).
    Every step is a normal edgeprune command run with --json; a rerun skips finished steps.
    """
    err = console(stderr=True)
    with stdout_to_stderr(as_json):
        result = run_demo(out, fast=fast, ratio=ratio, log=lambda msg: err.print(f"[bold]demo[/bold] {msg}"))
    if as_json:
        print_json(result)
        return
    def pct(v):
        return "-" if v is None else f"{v * 100:+.2f}"

    rows = [[r["model"], r["runtime"], r["precision"], f"{r['params']:,}", f"{r['macs'] / 1e6:,.1f} M",
             human_bytes(r["artifact_bytes"]) if r["artifact_bytes"] else "-",
             "-" if r["map50_95"] is None else f"{r['map50_95']:.4f}", pct(r["map50_95_drop"]),
             f"{r['fps']:.1f}", f"{r['speedup']:.2f}x", "-" if r["e2e_fps"] is None else f"{r['e2e_fps']:.1f}",
             "-" if r["e2e_speedup"] is None else f"{r['e2e_speedup']:.2f}x"] for r in result.table]
    bases = sorted({f"{r['runtime']}: {r['base']}" for r in result.table})
    console().print(table(
        "edgeprune demo", ["model", "runtime", "precision stored / executed", "params", "MACs", "size", "mAP50-95",
                           "drop (pts)", "FPS", "speedup", "e2e FPS", "e2e speedup"], rows,
        caption="speedup = FPS / FPS of the fastest Ultralytics export (FP32/FP16/INT8) of the unpruned model on the "
                f"same runtime, measured in the same run with the same settings ({'; '.join(bases)}). FPS: inference "
                "only, batch 1, latency hint, this CPU; e2e FPS: decode, resize, inference, box decode and NMS "
                "included. mAP50-95: each artifact run by its runtime on the synthetic val set, edgeprune's pipeline.",
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
