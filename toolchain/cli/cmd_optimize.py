"""``edgeprune optimize``: sparsify → prune → fine-tune → deploy → compare with Ultralytics' exports, resumable."""

from __future__ import annotations

import click

from toolchain.cli.opts import (
    OutputPath,
    cache_option,
    existing_file,
    head_ratio_option,
    imgsz_option,
    json_option,
    method_choice,
    open_ratio,
)
from toolchain.cli.render import console, print_json, progress, stdout_to_stderr, table
from toolchain.core.device import DEVICE_HELP


@click.command()
@click.argument("model", type=existing_file)
@click.option("--data", required=True, type=existing_file, help="YOLO data.yaml (training, calibration, accuracy).")
@click.option("--ratio", type=float, callback=open_ratio, default=None, help="Channels to remove, 0 < R < 1.")
@click.option("--speedup", type=click.FloatRange(min=1, min_open=True), default=None, metavar="X",
              help="Instead of --ratio: reach X times the fastest Ultralytics export of MODEL on --target/--device "
                   "(per-block ratios, depth and channel multiple measured there).")
@click.option("--budget-epochs", type=click.IntRange(min=2), default=40, show_default=True,
              help="Training epochs added in all: 40% sparsify, the rest fine-tunes the pruned model.")
@click.option("--method", type=method_choice, default="bn", show_default=True,
              help="Criterion choosing the channels (sparsify and prune).")
@click.option("--global", "global_pruning", is_flag=True, help="Rank channels across layers (with --ratio).")
@click.option("--round-to", type=click.IntRange(min=1), default=8, show_default=True,
              help="Channel multiple (with --ratio; --speedup measures it).")
@head_ratio_option(default="0.3, whatever --ratio is")
@click.option("--teacher", type=click.Choice(["unpruned", "sparsified", "none"]), default="unpruned",
              show_default=True, help="Whom the fine-tune distils from (none: labels only).")
@click.option("--target", type=click.Choice(["openvino", "onnx"]), default="openvino", show_default=True,
              help="Runtime deployed to and measured on.")
@click.option("--device", default="CPU", show_default=True, help="The runtime's device.")
@click.option("--train-device", default="auto", show_default=True, help=DEVICE_HELP)
@imgsz_option()
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True, help="Data loader workers.")
@cache_option
@click.option("--bench-seconds", type=click.FloatRange(min=0.5), default=10.0, show_default=True,
              help="Seconds per measurement in the comparison.")
@click.option("--out", required=True, type=OutputPath("dir"), help="Run folder; rerunning skips finished steps.")
@json_option
def optimize(model, data, ratio, speedup, budget_epochs, method, global_pruning, round_to, head_ratio, teacher, target,
             device, train_device, imgsz, batch, workers, cache, bench_seconds, out, as_json) -> None:
    """Make MODEL faster at the same accuracy, and show it against Ultralytics' own best export.

    Runs, each as the library function of the single command: eval (the unpruned mAP) → [search on
    the device, with --speedup] → sparsify (the channels to go, and the residual units the search
    removes, are ramped to zero while the rest trains) → prune --method bn (only dead channels and
    units go) → finetune (distilled) → deploy FP32 and
    INT8 → compare with Ultralytics' FP32/FP16/INT8 exports of MODEL in one run. Every finished
    step is kept in OUT/steps/; rerun the same command to resume.
    """
    import edgeprune

    err = console(stderr=True)
    with stdout_to_stderr(as_json), progress("optimize") as status:
        result = edgeprune.optimize(
            model, data, out, ratio=ratio, speedup=speedup, budget_epochs=budget_epochs, method=method,
            global_pruning=global_pruning, round_to=round_to, head_ratio=head_ratio,
            teacher=None if teacher == "none" else teacher,
            target=target, device=device, train_device=train_device, imgsz=imgsz, batch=batch, workers=workers,
            cache=cache, bench_seconds=bench_seconds, progress=status, log=lambda msg: err.print(f"[bold]optimize[/bold] {msg}"))
    for note in result.notes:
        err.print(f"[yellow]note:[/yellow] {note}")
    if as_json:
        print_json(result)
        return
    render(result)


def _num(value, fmt: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, fmt) + suffix


def render(result) -> None:
    """The recipe's steps (accuracy after each) and the speed table against Ultralytics' best export."""
    steps, cfg = result.steps, result.config
    base = steps["eval"]["map50_95"]
    sparse, pruned, tuned = steps["sparsify"], steps["prune"], steps["finetune"]
    epochs = cfg["epochs"]
    console().print(table("Recipe", ["step", "epochs", "MACs", "mAP50-95", "vs unpruned (pts)"], [
        ["unpruned (input)", "-", f"{pruned['before']['macs'] / 1e6:,.1f} M", f"{base:.4f}", "0"],
        ["sparsified", epochs["sparsify"], f"{pruned['before']['macs'] / 1e6:,.1f} M", _num(sparse["map50_95"], ".4f"),
         _num(None if sparse["map50_95"] is None else 100 * (sparse["map50_95"] - base), "+.2f")],
        ["pruned (no fine-tuning)", "-", f"{pruned['after']['macs'] / 1e6:,.1f} M",
         _num(pruned["after"]["map50_95"], ".4f"),
         _num(None if pruned["after"]["map50_95"] is None else 100 * (pruned["after"]["map50_95"] - base), "+.2f")],
        ["fine-tuned", epochs["finetune"], f"{pruned['after']['macs'] / 1e6:,.1f} M", f"{tuned['map50_95']:.4f}",
         f"{100 * (tuned['map50_95'] - base):+.2f}"],
    ], caption=f"mAP50-95 by the Ultralytics validator at {cfg['imgsz']} px; {sum(epochs.values())} epochs added in all"))
    rows = [[("[bold]" if r["is_base"] else "") + r["model"] + (" (base)[/bold]" if r["is_base"] else ""),
             r["stored_executed"], _num(r["macs"] and r["macs"] / 1e6, ",.1f"), _num(r["map50_95"], ".4f"),
             _num(r["drop_points"], "+.2f"), f"{r['fps']:.1f}", f"{r['speedup']:.2f}x", _num(r["e2e_fps"], ".1f"),
             _num(r["e2e_speedup"], ".2f", "x")] for r in result.table]
    first = steps["compare"]["rows"][0]
    console().print(table(
        "Against Ultralytics' own exports of the unpruned model",
        ["artifact", "precision stored / executed", "MACs (M)", "mAP50-95", "drop (pts)", "FPS", "speedup", "e2e FPS",
         "e2e speedup"], rows,
        caption=f"{cfg['target']} on {first['cpu']} ({first['device']}), batch {first['batch']}, {first['hint']} hint, "
                f"{first['threads']} threads; speedup = FPS / FPS of the fastest Ultralytics export (FP32/FP16/INT8) "
                "of the unpruned model, built and measured in the same run with the same settings, inference only; "
                "e2e: decode, letterbox, inference, box decode and NMS. "
                "mAP50-95: each artifact run by its runtime (edgeprune's pipeline); drop against the unpruned "
                f"checkpoint's validator mAP50-95. Run folder: {result.out}"))
