"""``edgeprune preflight``, ``edgeprune dpu-rewrite`` and ``edgeprune board bench``: the KV260 DPU commands."""

from __future__ import annotations

import click

from toolchain.cli.opts import (
    OutputPath,
    existing_file,
    imgsz_option,
    input_shape_option,
    json_option,
    resolve_imgsz,
    weights_option,
)
from toolchain.cli.render import console, print_json, progress, stdout_to_stderr, table

ACTS = ("hardswish", "leaky", "relu")


@click.command()
@click.argument("model", type=existing_file)
@click.option("--target", type=click.Choice(["kv260"]), default="kv260", show_default=True,
              help="Board whose DPU to check against (KV260: DPUCZDX8G_ISA1_B4096).")
@imgsz_option()
@input_shape_option
@click.option("--all", "show_all", is_flag=True, help="List every op, not only the CPU fallbacks.")
@weights_option
@json_option
def preflight(model, target, imgsz, input_shape, show_all, weights, as_json) -> None:
    """Which layers of MODEL the DPU runs, why the others fall back to the CPU, and the fixes. No Docker needed.

    The subgraph count is an estimate (DPU regions separated by CPU ops); `deploy vitis`
    reads the compiler's real count.
    """
    import edgeprune

    imgsz = resolve_imgsz(model, imgsz) if input_shape is None else imgsz
    with stdout_to_stderr(as_json), progress("tracing") as status:
        report = edgeprune.preflight(model, target=target, imgsz=imgsz, input_shape=input_shape, weights=weights,
                                     progress=status)
    if as_json:
        print_json(report)
        return
    fixes = {fix: i + 1 for i, fix in enumerate(report.fixes)}
    rows = [[r.index, r.layer, r.op, r.detail, r.device, r.reason or "-", f"[{fixes[r.fix]}]" if r.fix else "-"]
            for r in report.rows if show_all or r.device != "DPU"]
    summary = report.to_json()["summary"]
    caption = [f"{report.dpu} ({report.target}); graph: {report.graph}",
               f"{summary['dpu_ops']} of {summary['ops']} ops on the DPU; CPU fallbacks: "
               f"{summary['cpu_fallbacks_backbone_neck']} in backbone/neck, "
               f"{summary['cpu_fallbacks_head']} in the head",
               f"expected DPU subgraphs: {report.expected_dpu_subgraphs} (estimate; 1 is the goal)"]
    if report.host_postprocess:
        caption.append(f"on the board's CPU after the DPU: {', '.join(report.host_postprocess)}")
    if rows:
        title = "DPU preflight: every op" if show_all else "DPU preflight: CPU fallbacks"
        console().print(table(title, ["#", "layer", "op", "detail", "runs on", "why", "fix"], rows))
    else:
        console().print("DPU preflight: no CPU fallbacks")
    console().print("\n".join(caption))
    for fix, number in fixes.items():
        console().print(f"[bold]fix [{number}]:[/bold] {fix}", markup=True)


@click.command("dpu-rewrite")
@click.argument("model", type=existing_file)
@click.option("--out", required=True, type=OutputPath("file"),
              help="Where to write the rewritten model: a .pt, or for a Darknet cfg a .cfg (its .weights beside it).")
@click.option("--act", type=click.Choice(ACTS), default=None,
              help="Activation replacing SiLU/Mish/Swish: Hardswish or LeakyReLU(26/256) for .pt models "
                   "(default hardswish); leaky or relu for Darknet cfgs (default leaky).")
@weights_option
@json_option
def dpu_rewrite(model, out, act, weights, as_json) -> None:
    """Replace activations the DPU lacks; .pt models also get their head's decode moved to post-processing.

    A .pt output loads with YOLO("OUT") and fine-tunes with `edgeprune finetune`; a Darknet cfg
    gives OUT.cfg + OUT.weights. Either must be fine-tuned, since the activations changed.
    """
    import edgeprune

    with stdout_to_stderr(as_json):
        report = edgeprune.dpu_rewrite(model, out, act=act, weights=weights)
    for warning in report.warnings:  # on stderr, so --json output stays parseable
        console(stderr=True).print(f"[yellow]warning:[/yellow] {warning}")
    if as_json:
        print_json(report)
        return
    replaced = ", ".join(f"{n} {kind}" for kind, n in report.replaced.items()) or "none"
    rows = [["activations replaced", f"{replaced} -> {report.act}"],
            ["LeakyReLU slopes set to 26/256", report.leaky_slopes_fixed],
            ["head decode on the board's CPU", report.host_decode]]
    console().print(table("DPU rewrite", ["", "value"], rows,
                          caption=f"saved to {report.out}; check it with `edgeprune preflight {report.out}`"))


@click.group()
def board() -> None:
    """Run a deployed model on the board itself (over SSH)."""


@board.command("bench")
@click.option("--host", required=True, help="user@ip of the KV260 (or an ~/.ssh/config alias).")
@click.option("--bundle", type=click.Path(exists=True, file_okay=False), default="board", show_default=True,
              help="The board/ folder written by `deploy vitis`.")
@click.option("--remote-dir", default="edgeprune_kv260", show_default=True,
              help="Folder on the board (relative = under the login's home).")
@click.option("--mode", type=click.Choice(["inference", "e2e", "streams"]), default="inference", show_default=True)
@click.option("--source", "sources", multiple=True,
              help="On the board: e2e input (image, folder, video, synthetic); give it 4 times for streams.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="VART runners/threads.")
@click.option("--iterations", type=click.IntRange(min=1), default=None, help="Run this many instead of --duration.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--port", type=click.IntRange(min=1), default=None, help="SSH port.")
@json_option
def board_bench(host, bundle, remote_dir, mode, sources, threads, iterations, duration, warmup, port,
                as_json) -> None:
    """Copy the bundle to the board with scp, run run_kv260.py there with ssh, print its measurement."""
    import edgeprune

    with progress(f"running on {host}") as status:
        result = edgeprune.board_bench(host, bundle, remote_dir=remote_dir, mode=mode, sources=sources, threads=threads,
                                       iterations=iterations, duration=duration, warmup=warmup, port=port,
                                       progress=status)
    if as_json:
        print_json(result)
        return
    lat = result["latency"]
    rows = [[result["mode"], f"{result['throughput_fps']:.1f}", f"{lat['median_ms']:.2f}", f"{lat['p90_ms']:.2f}",
             f"{lat['p99_ms']:.2f}", result["iterations"], f"{result['first_inference_ms']:.1f}",
             result["includes_pre_post"]]]
    caption = (f"measured on {host}: {result['device']}, {result['cpu']}, vart {result['backend_version']}, "
               f"{result['threads']} thread(s), input {'x'.join(map(str, result['input_shape']))}")
    console().print(table("Board benchmark", ["mode", "FPS", "median ms", "p90", "p99", "iterations", "first ms",
                                              "pre/post timed"], rows, caption=caption))
    for note in result["notes"]:
        console(stderr=True).print(f"[yellow]note:[/yellow] {note}")
