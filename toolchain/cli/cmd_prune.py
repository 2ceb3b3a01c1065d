"""``edgeprune prune``: structured (default) or unstructured pruning of one model."""

from __future__ import annotations

import click

from toolchain.cli.opts import (
    OutputPath,
    existing_file,
    head_ratio_option,
    imgsz_option,
    input_shape_option,
    json_option,
    method_choice,
    open_ratio,
    resolve_imgsz,
)
from toolchain.cli.render import console, print_json, progress, stdout_to_stderr, table
from toolchain.core.formatting import human_bytes


@click.command()
@click.argument("model", type=existing_file)
@click.option("--ratio", type=float, callback=open_ratio,
              help="Fraction of channels (or weights, with --unstructured) to remove, 0 < R < 1.")
@click.option("--layers", type=click.IntRange(min=1), default=None,
              help="Instead of channels, remove the K least important residual units (BN gamma).")
@click.option("--method", type=method_choice, default="l1", show_default=True, help="Channel importance.")
@click.option("--global", "global_pruning", is_flag=True, help="Rank channels across layers instead of per layer.")
@click.option("--round-to", type=click.IntRange(min=1), default=8, show_default=True,
              help="Keep channel counts multiples of this (1 = no rounding).")
@click.option("--steps", type=click.IntRange(min=1), default=1, show_default=True,
              help="Prune iteratively in this many steps.")
@head_ratio_option()
@imgsz_option()
@click.option("--data", type=existing_file, default=None,
              help="YOLO data.yaml: checked against the model's classes, both models scored by the Ultralytics "
                   "validator (the mAP right after pruning); needed by --method taylor.")
@input_shape_option
@click.option("--unstructured", is_flag=True, help="L1 unstructured pruning (zeros weights; does not speed up).")
@click.option("--latency-iters", type=click.IntRange(min=0), default=30, show_default=True,
              help="Timed runs per model for the latency column (0 = skip).")
@click.option("--out", required=True, type=OutputPath("file"), help="Where to write the pruned .pt.")
@click.option("--dpu-friendly", is_flag=True,
              help="Also run `dpu-rewrite` on the pruned model (DPU activations, head decode in post-processing).")
@click.option("--dpu-act", type=click.Choice(["hardswish", "leaky"]), default="hardswish", show_default=True,
              help="With --dpu-friendly: the activation replacing SiLU.")
@click.option("--latency-target", type=click.FloatRange(min=0, min_open=True), default=None, metavar="MS",
              help="Prune for the device: per-block ratios from latencies measured on it, searched until the "
                   "model's median latency (batch 1, FP32 IR) is at most MS.")
@click.option("--speedup", type=click.FloatRange(min=1, min_open=True), default=None, metavar="X",
              help="Like --latency-target, with the target X times faster than the fastest Ultralytics export of "
                   "the unpruned model (FP32/FP16, INT8 with --data), measured in the same run.")
@click.option("--target", type=click.Choice(["openvino"]), default="openvino", show_default=True,
              help="With --latency-target/--speedup: the runtime measured.")
@click.option("--device", default="CPU", show_default=True, help="With --latency-target/--speedup: its device.")
@json_option
def prune(model, ratio, layers, method, global_pruning, round_to, steps, head_ratio, imgsz, data, input_shape,
          unstructured, latency_iters, out, dpu_friendly, dpu_act, latency_target, speedup, target, device,
          as_json) -> None:
    """Prune MODEL (an Ultralytics checkpoint or a pickled nn.Module) and save it to OUT.

    Structured pruning removes whole channels, so the model gets smaller and faster on every
    runtime; the output loads with YOLO("OUT") and fine-tunes with `edgeprune finetune`.
    With --latency-target or --speedup the ratios are chosen per block from measurements on the device.
    """
    import edgeprune

    imgsz = resolve_imgsz(model, imgsz, fallback=640)
    with stdout_to_stderr(as_json), progress("pruning") as status:
        report = edgeprune.prune(
            model, out, ratio, layers=layers or 0, method=method, global_pruning=global_pruning, round_to=round_to,
            steps=steps, imgsz=imgsz, data=data, unstructured=unstructured, input_shape=input_shape,
            latency_iters=latency_iters, latency_target=latency_target, speedup=speedup, target=target,
            device=device, dpu_friendly=dpu_friendly, dpu_act=dpu_act, head_ratio=head_ratio, progress=status)
    for note in report.notes:  # on stderr, so --json output stays parseable
        console(stderr=True).print(f"[yellow]note:[/yellow] {note}")
    if as_json:
        print_json(report)
        return
    _render(report)


def _render(report) -> None:
    b, a, r = report.before, report.after, report.ratios()

    def row(name, before, after, ratio, show=str):
        return [name, show(before), show(after), "-" if ratio is None else f"{ratio:.3f}"]

    rows = [
        row("params", b.params, a.params, r["params"], lambda v: f"{v:,}"),
        row("MACs", b.macs, a.macs, r["macs"], lambda v: f"{v / 1e6:,.1f} M"),
        row("file size", b.file_bytes, a.file_bytes, r["file_bytes"], human_bytes),
        row("zip-compressed size", b.zip_bytes, a.zip_bytes, r["zip_bytes"], human_bytes),
        row("zero weights", b.zero_fraction, a.zero_fraction, None, lambda v: f"{v:.1%}"),
    ]
    if b.map50_95 is not None and a.map50_95 is not None:
        rows.append(row("mAP50-95 (no fine-tuning)", b.map50_95, a.map50_95, None, lambda v: f"{v:.4f}"))
        rows.append(row("mAP50 (no fine-tuning)", b.map50, a.map50, None, lambda v: f"{v:.4f}"))
    if b.latency and a.latency:
        rows.append(row("latency (median)", b.latency.median_ms, a.latency.median_ms, r["latency"],
                        lambda v: f"{v:.2f} ms"))
    what = "" if report.mode == "layers" else f", method {report.method}, ratio {report.ratio}"
    if report.device_search:
        found = report.device_search
        ratios = found["layer_ratios"]
        what = (f", method {report.method}, per-block ratios measured on the device ({min(ratios.values()):.2f}-"
                f"{max(ratios.values()):.2f}), channels rounded to {found['round_to']}")
    if report.head_ratio is not None:
        what += f", head {report.head_ratio}"
    caption = [f"{report.mode} pruning{what}, input {report.input_shape}"]
    if report.latency_measured:
        m = report.latency_measured
        caption.append(f"latency: CPU ({m['cpu']}), {m['backend']}, {m['executed_precision']}, batch {m['batch']}, "
                       f"{m['threads']} threads, median of {m['iterations']} runs after {m['warmup']} warm-up, "
                       f"{'with' if m['includes_pre_post'] else 'no'} pre/post-processing")
    caption.append(f"saved to {report.out}")
    console().print(table("Pruning result", ["", "before", "after", "after/before"], rows, caption="\n".join(caption)))
