"""``edgeprune bench ARTIFACT`` and ``edgeprune bench compare A B ...``: on-device FPS."""

from __future__ import annotations

import click

from toolchain.cli.opts import OutputPath, backend_choice, compute_precision_choice, weights_option
from toolchain.cli.render import console, print_json, progress, stdout_to_stderr, table


class _DefaultRunGroup(click.Group):
    """``bench ARTIFACT ...`` means ``bench run ARTIFACT ...``; ``bench compare ...`` stays itself."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _bench_options(func):
    for option in reversed([
        click.option("--backend", type=backend_choice, default="auto", show_default=True,
                     help="Runtime (auto: the one the artifact belongs to). KV260 bundles: `edgeprune board bench`."),
        click.option("--device", "-d", default="cpu", show_default=True, help="CPU, GPU, NPU, AUTO (OpenVINO); cpu, cuda."),
        click.option("--hint", "-hint", type=click.Choice(["latency", "throughput"]), default="latency", show_default=True),
        click.option("--requests", "-nireq", type=click.IntRange(min=1), default=None,
                     help="Inferences in flight (default: 1 for latency, the runtime's optimum for throughput)."),
        click.option("--batch", "-b", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Images per inference; the input is (B, 3, H, W) and FPS counts images. "
                          "An ONNX model needs a dynamic batch (deploy --dynamic-shape)."),
        click.option("--threads", "-nthreads", type=click.IntRange(min=1), default=None, help="Inference threads."),
        click.option("--infer-precision", "-infer_precision", "infer_precision", type=compute_precision_choice,
                     default="auto", show_default=True,
                     help="Compute precision to force where the runtime allows (benchmark_app's -infer_precision); "
                          "auto = the runtime's choice, reported. The artifact's own precision is deploy's --precision."),
        click.option("--duration", "-t", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
                     help="Seconds per measurement."),
        click.option("--iterations", "-niter", type=click.IntRange(min=1), default=None, help="Run this many instead."),
        click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True),
        click.option(
            "--imgsz", type=click.IntRange(min=32, max=4096), default=None,
            help="Input size for torch models and dynamic-shape artifacts (default: the artifact's)."),
        click.option("--json", "json_out", is_flag=False, flag_value="-", default=None, metavar="[OUT]",
                     help="JSON on stdout; with a path, append JSON lines to it instead."),
        click.option("--csv", "csv_out", type=OutputPath("file"), default=None,
                     help="Also write the results as CSV (one row per measurement) to this file."),
    ]):
        func = option(func)
    return func


def _emit(results, json_out) -> bool:
    """Write JSON as asked; True when the table should be skipped."""
    if json_out is None:
        return False
    if json_out == "-":
        print_json(results if len(results) > 1 else results[0])
        return True
    from toolchain.core.jsonl import append_records

    append_records(json_out, [r.to_json() for r in results])
    console(stderr=True).print(f"appended {len(results)} result(s) to {json_out}")
    return False


def _render(results) -> None:
    first = results[0]
    config = [
        ["artifact", first.artifact],
        ["backend", f"{first.backend} {first.backend_version}"],
        ["device", f"{first.device} ({first.cpu})"],
        ["precision stored / executed", f"{first.artifact_precision} / {first.executed_precision}"],
        ["hint / requests / threads / batch", f"{first.hint} / {first.requests} / {first.threads} / {first.batch}"],
    ]
    console().print(table("Configuration applied", ["", "value"], config))
    rows = []
    for r in results:
        label = {"inference": f"inference only, input {'x'.join(map(str, r.input_shape))}",
                 "e2e": "end-to-end (decode+resize+infer+NMS)",
                 "streams": "4 streams spliced, end-to-end"}[r.mode]
        rows.append([label, f"{r.throughput_fps:.1f}", f"{r.latency.median_ms:.2f}", f"{r.latency.p90_ms:.2f}",
                     f"{r.latency.p99_ms:.2f}", f"{r.latency.min_ms:.2f}", f"{r.latency.max_ms:.2f}",
                     r.iterations, f"{r.first_inference_ms:.1f}"])
    console().print(table("Results", ["measurement", "FPS", "median ms", "p90", "p99", "min", "max", "iterations",
                                      "first ms"], rows))
    for r in results:
        if r.mode == "e2e":
            stages = ", ".join(f"{k} {v:.2f} ms" for k, v in r.extra["stage_median_ms"].items())
            pipelined = (f"; pipelined as `edgeprune stream` runs it ({r.extra['pipelined_requests']} requests in "
                         f"flight, decode on its own thread): {r.extra['pipelined_fps']:.1f} FPS, bound by "
                         f"{r.extra['pipelined_bound_by']}" if "pipelined_fps" in r.extra else "")
            console().print(f"e2e stages (median): {stages}; bound by {r.extra['bound_by']}; one frame after another: "
                            f"{r.extra['effective_fps']:.1f} FPS (frame interval {r.extra['frame_interval']})"
                            f"{pipelined}; source: {r.extra['source']}")
        if r.mode == "streams":
            sp, se = r.extra["spliced"], r.extra["separate"]
            console().print(table(
                "Multi-stream (decode, pre/post-processing included)",
                ["mode", "input", "per-stream FPS", "aggregate FPS"],
                [["4 streams spliced, 1 inference", "x".join(map(str, r.extra["spliced_input"])),
                  f"{sp['per_stream_fps']:.1f}", f"{sp['aggregate_fps']:.1f}"],
                 ["4 separate inferences", "x".join(map(str, r.extra["separate_input"])),
                  f"{se['per_stream_fps']:.1f}", f"{se['aggregate_fps']:.1f}"]],
                caption=f"spliced / separate = {r.extra['spliced_vs_separate']:.2f}x; "
                        f"{r.extra.get('requests_in_flight', 1)} request(s) in flight ({r.hint} hint)",
            ))
        for note in r.notes:
            console(stderr=True).print(f"[yellow]note:[/yellow] {note}")


@click.group(cls=_DefaultRunGroup)
def bench() -> None:
    """Measure FPS on this device: `bench ARTIFACT [options]` or `bench compare A B ...`."""


@bench.command("run")
@click.argument("artifact", type=click.Path(exists=True))
@_bench_options
@click.option("--e2e", is_flag=True, help="Also measure end-to-end FPS (decode, letterbox, infer, NMS).")
@click.option("--streams", type=click.IntRange(min=0), default=0, help="Number of streams (4, with --splice).")
@click.option("--splice", type=click.IntRange(min=64), default=None,
              help="Tile the streams 2x2 into one input of this side (e.g. 832 = 4 x 416).")
@click.option("--source", default="synthetic", show_default=True,
              help="synthetic, a video file, an image folder, or a camera index.")
@click.option("--frame-interval", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run detection on every K-th frame (e2e).")
@weights_option
def bench_run(artifact, backend, device, hint, requests, batch, threads, infer_precision, duration, iterations, warmup,
              imgsz,
              json_out, csv_out, e2e, streams, splice, source, frame_interval, weights) -> None:
    """Latency percentiles, throughput, first-inference time and the precision actually executed.

    ARTIFACT is a deployed artifact, or a model source run in PyTorch (a .pt checkpoint, a
    Darknet .cfg with --weights).
    """
    import edgeprune

    _check_outputs(json_out, None)
    with stdout_to_stderr(json_out == "-"), progress("benchmarking") as status:
        results = edgeprune.bench(artifact, backend=backend, device=device, hint=hint, requests=requests, batch=batch,
                                  threads=threads, infer_precision=infer_precision, duration=duration, iterations=iterations,
                                  warmup=warmup, e2e=e2e, streams=streams, splice=splice, source=source,
                                  frame_interval=frame_interval, imgsz=imgsz, weights=weights, progress=status)
    _write_csv(csv_out, results)
    if not _emit(results, json_out):
        _render(results)


@bench.command("compare")
@click.argument("artifacts", nargs=-1, required=True, type=click.Path(exists=True))
@_bench_options
@click.option("--plot", type=OutputPath("file"), default=None, help="Write a PNG bar chart here.")
@click.option("--vs-ultralytics", "unpruned", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The unpruned .pt: build Ultralytics' own FP32/FP16/INT8 exports of it for each runtime compared, "
                   "measure them alike, and divide every FPS by the fastest (what a user would pick instead).")
@click.option("--data", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With --vs-ultralytics: calibration images for Ultralytics' INT8 export (skipped without).")
@click.option("--e2e", is_flag=True, help="Also measure each end to end (decode, resize, infer, NMS).")
def bench_compare(artifacts, backend, device, hint, requests, batch, threads, infer_precision, duration, iterations,
                  warmup, imgsz,
                  json_out, csv_out, plot, unpruned, data, e2e) -> None:
    """Run several artifacts in one process with the same settings; ratios against the best Ultralytics export.

    Without --vs-ultralytics the ratios are against the first artifact.
    """
    import edgeprune

    _check_outputs(json_out, plot)
    with stdout_to_stderr(json_out == "-"), progress("benchmarking") as status:
        result = edgeprune.compare(artifacts, unpruned=unpruned, data=data, backend=backend, device=device, hint=hint,
                                   requests=requests, batch=batch, threads=threads, infer_precision=infer_precision,
                                   duration=duration, iterations=iterations, warmup=warmup, e2e=e2e, imgsz=imgsz,
                                   progress=status)
    results = result.results
    _write_csv(csv_out, results + list(result.e2e))
    if plot:
        from toolchain.core.plots import bar_chart

        bar_chart(result.labels, [r.throughput_fps for r in results], "inference FPS", plot,
                  title=f"{hint} hint, batch {batch}, inference only, {results[0].cpu}")
    if json_out == "-":
        print_json(result)
        _fail_on_skipped(result)
        return
    if json_out:
        _emit(results, json_out)
    rows = [[label, f"{r.backend} ({r.device})", f"{r.artifact_precision} / {r.executed_precision}",
             f"{r.throughput_fps:.1f}", f"{r.latency.median_ms:.2f}", f"{result.ratio(i):.2f}x"]
            + ([f"{result.e2e[i].throughput_fps:.1f}"] if e2e else [])
            for i, (label, r) in enumerate(zip(result.labels, results))]
    base = ("the fastest Ultralytics export of the unpruned model" if result.references else "the first artifact")
    shape = "x".join(map(str, results[result.base].input_shape[-2:]))
    caption = (f"inference only, {hint} hint, batch {batch}, input {shape}, {results[0].threads} threads, "
               f"{results[0].cpu}; "
               f"ratio = FPS / FPS of {base} ({result.base_label})")
    if plot:
        caption += f"; chart: {plot}"
    columns = ["artifact", "backend", "precision stored / executed", "FPS", "median ms", "ratio"]
    console().print(table("Comparison", columns + (["e2e FPS"] if e2e else []), rows, caption=caption))
    _fail_on_skipped(result)


def _write_csv(csv_out, results) -> None:
    if csv_out:
        from targets.bench import write_csv

        write_csv(csv_out, results)
        console(stderr=True).print(f"wrote {len(results)} row(s) to {csv_out}")


def _fail_on_skipped(result) -> None:
    """After the measured rows are out: name the artifacts that could not run, and exit 2."""
    if result.failed:  # the measured rows are already on stdout (valid JSON under --json): the error to stderr only
        import sys

        from toolchain.cli.render import EXIT_USER_ERROR

        click.echo("edgeprune: error: could not run " + "; ".join(why for _, why in result.failed), err=True)
        sys.exit(EXIT_USER_ERROR)


def _check_outputs(json_out, plot) -> None:
    """Refuse unwritable --json/--plot paths before anything is measured."""
    from toolchain.core.fileio import check_output

    if json_out not in (None, "-"):
        check_output(json_out, "file", "--json")
    if plot:
        check_output(plot, "file", "--plot")
