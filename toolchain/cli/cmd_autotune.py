"""``edgeprune autotune``: prune ratio × precision × target, measured on the device, with the Pareto front."""

from __future__ import annotations

import click

from toolchain.cli.opts import (
    OutputPath,
    existing_file,
    imgsz_option,
    json_option,
    method_choice,
    refuse_ignored,
    resolve_imgsz,
    strict_option,
    weights_option,
)
from toolchain.cli.render import console, print_json, progress, stdout_to_stderr, table
from toolchain.core.device import DEVICE_HELP


def _choices(allowed: tuple[str, ...]):
    def parse(ctx, param, value):
        items = tuple(v.strip().lower() for v in value.split(",") if v.strip())
        bad = [v for v in items if v not in allowed]
        if not items or bad:
            raise click.BadParameter(f"must be a comma list of {', '.join(allowed)}; got {value!r}")
        return items
    return parse


def _ratios(ctx, param, value):
    from toolchain.cli.cmd_sweep import _ratios as sweep_ratios

    return sweep_ratios(ctx, param, value)


@click.command()
@click.argument("model", type=existing_file)
@click.option("--data", required=True, type=existing_file, help="YOLO data.yaml (val scored, train fine-tunes, INT8 "
                                                                  "calibrates).")
@click.option("--ratios", default="0.3,0.5,0.7", show_default=True, callback=_ratios,
              help="Pruning ratios (START:STOP:STEP or a comma list); the unpruned model is always measured too.")
@click.option("--precisions", default="fp32,fp16,int8", show_default=True,
              callback=_choices(("fp32", "fp16", "int8")), help="Precisions deployed per ratio and target.")
@click.option("--targets", default="openvino,onnx", show_default=True, callback=_choices(("openvino", "onnx")),
              help="Runtimes measured on this machine (or on the Ray cluster's nodes).")
@click.option("--max-drop", type=click.FloatRange(min=0), default=0.02, show_default=True,
              help="Largest accepted mAP50 drop against the unpruned FP32 artifact of the same target.")
@click.option("--finetune-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Fine-tune each pruned model this many epochs before deploying it.")
@click.option("--method", type=method_choice, default="l1", show_default=True, help="Channel importance.")
@click.option("--round-to", type=click.IntRange(min=1), default=8, show_default=True,
              help="Keep channel counts multiples of this (1 = no rounding).")
@imgsz_option()
@click.option("--bench-iterations", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--calib-images", type=click.IntRange(min=1), default=300, show_default=True,
              help="INT8 calibration images.")
@click.option("--no-references", is_flag=True,
              help="Skip measuring Ultralytics' own exports of the unpruned model (the speedup base).")
@click.option("--device", default="cpu", show_default=True,
              help="Device of the runtime every point is deployed to and measured on (e.g. cpu, GPU).")
@click.option("--train-device", default="auto", show_default=True, help="Torch device for fine-tuning. " + DEVICE_HELP)
@weights_option
@click.option("--executor", type=click.Choice(("local", "ray")), default="local", show_default=True)
@click.option("--ray-address", default=None,
              help="Ray cluster to run on (e.g. 10.0.0.5:6379); files travel as bytes, no shared disk needed.")
@click.option("--out", required=True, type=OutputPath("dir"), help="Run folder; rerunning with it resumes.")
@strict_option
@json_option
def autotune(model, data, ratios, precisions, targets, max_drop, finetune_epochs, method, round_to, imgsz,
             bench_iterations, calib_images, no_references, device, train_device, weights, executor, ray_address, out,
             strict, as_json) -> None:
    """Search prune ratio × precision × target for MODEL on the device that will run it.

    Every ratio is pruned once (fine-tuned with --finetune-epochs), deployed to every target at
    every precision, evaluated by running that artifact and benchmarked. Points go to
    OUT/autotune.jsonl as they finish (a rerun resumes); the tables show, per target, each
    artifact with the precision the device executed, the Pareto front of (mAP50, FPS), and the
    recommended point: the fastest within --max-drop of its target's unpruned FP32 artifact.
    `edgeprune report OUT` draws the same per target, with the front plotted.
    """
    import edgeprune

    refuse_ignored(ray_address=executor != "ray" and "without --executor ray")
    imgsz = resolve_imgsz(model, imgsz)
    err = console(stderr=True)

    def on_points(points) -> None:
        for p in points:
            err.print(f"ratio {p.ratio:g} {p.target} {p.precision} (executed {p.executed_precision}): "
                      f"mAP50 {p.map50:.3f}, {p.fps:.1f} FPS", markup=False)

    with stdout_to_stderr(as_json), progress("autotuning") as status:
        result = edgeprune.autotune(
            model, data, out, ratios=ratios, precisions=precisions, targets=targets, max_drop=max_drop,
            finetune_epochs=finetune_epochs, method=method, round_to=round_to, imgsz=imgsz,
            bench_iterations=bench_iterations, calib_images=calib_images, references=not no_references,
            device=device, train_device=train_device, weights=weights, executor=executor, ray_address=ray_address,
            strict=strict, on_points=on_points,
            progress=status)
    if as_json:
        print_json(result)
        return
    for target in result.config.targets:
        points = [p for p in result.points if p.target == target]
        if not points:
            continue
        front = {(p.ratio, p.precision) for p in result.fronts.get(target, [])}
        base = result.base_fps(target)
        rows = [[p.ratio, p.precision, p.executed_precision, p.map50, p.map50_95, p.params, p.macs / 1e6, p.fps,
                 p.fps / base if base else None, "yes" if (p.ratio, p.precision) in front else ""] for p in points]
        refs = result.references.get(target) or []
        caption = (f"FPS: inference only, batch 1, latency hint, {points[0].threads or 'default'} threads, on "
                   f"{points[0].cpu}; speedup base: the fastest Ultralytics export of the unpruned model "
                   + (", ".join(f"{r['label']} {r['fps']:.1f} FPS" for r in refs) if refs else "(not measured)"))
        console().print(table(f"Autotune on {target}", ["ratio", "precision", "executed", "mAP50", "mAP50-95",
                                                        "params", "MACs (M)", "FPS", "× best Ultralytics export",
                                                        "Pareto"], rows, caption=caption))
    rec = result.recommendation
    console().print(f"recommended: {rec.reason}" + (f"\nartifact: {rec.point.artifact}" if rec.point else ""),
                    markup=False)
    console().print(f"{result.computed} artifacts measured, {result.resumed} resumed from {out}/autotune.jsonl",
                    markup=False)
