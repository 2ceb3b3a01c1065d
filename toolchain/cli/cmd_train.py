"""``edgeprune train`` and ``edgeprune finetune``: thin wrappers over the Ultralytics trainer."""

from __future__ import annotations

import click

from toolchain.cli.opts import (OutputPath, check_data, check_stride, existing_file, imgsz_option, json_option,
                                refuse_ignored, resolve_imgsz, strict_option)
from toolchain.device import DEVICE_HELP
from toolchain.cli.render import console, print_json, stdout_to_stderr, table


def _train_options(func):
    for option in reversed([
        click.option("--epochs", type=click.IntRange(min=1), default=15, show_default=True),
        imgsz_option(),
        click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True),
        click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True, help="Data loader workers."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--lr0", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Initial learning rate (SGD); default: Ultralytics' automatic choice."),
        click.option("--device", default="auto", show_default=True, help=DEVICE_HELP),
        strict_option,
        json_option,
    ]):
        func = option(func)
    return func


def _render(result, title: str, as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    console().print(table(
        title, ["weights", "epochs", "params", "mAP50", "mAP50-95"],
        [[result.weights, result.epochs, result.params, result.map50, result.map50_95]],
        caption=f"run folder: {result.run_dir}",
    ))


@click.command()
@click.argument("data", type=existing_file)
@click.option("--model", default="yolov8n.yaml", show_default=True,
              help="Ultralytics model yaml (built from scratch, offline) or a checkpoint to start from.")
@click.option("--out", required=True, type=OutputPath("dir"), help="Run folder; weights go to OUT/weights/.")
@_train_options
def train(data, model, out, epochs, imgsz, batch, workers, seed, lr0, device, strict, as_json) -> None:
    """Train a baseline YOLO on DATA (a YOLO data.yaml) with the Ultralytics trainer (GPU when present)."""
    import edgeprune

    check_stride(imgsz)
    check_data(data, ("train", "val"), strict)
    imgsz = resolve_imgsz(model, imgsz, fallback=640)
    with stdout_to_stderr(as_json):
        result = edgeprune.train(data, out, model=model, epochs=epochs, imgsz=imgsz, batch=batch, workers=workers,
                                 seed=seed, lr0=lr0, device=device)
    _render(result, "Training finished", as_json)


@click.command()
@click.argument("checkpoint", type=existing_file)
@click.option("--data", required=True, type=existing_file, help="YOLO data.yaml to fine-tune on.")
@click.option("--out", required=True, type=OutputPath("dir"), help="Run folder; weights go to OUT/weights/.")
@click.option("--distill", "teacher", type=existing_file, default=None,
              help="Teacher checkpoint to distil from (its class probabilities and box distributions). "
                   "Default: the unpruned model `prune` recorded, when it is still there unchanged.")
@click.option("--no-distill", is_flag=True, help="Fine-tune on the labels alone.")
@click.option("--distill-weight", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Scale of the distillation loss against the task loss.")
@_train_options
def finetune(checkpoint, data, out, teacher, no_distill, distill_weight, epochs, imgsz, batch, workers, seed, lr0,
             device, strict, as_json) -> None:
    """Fine-tune a (pruned) CHECKPOINT keeping its architecture; saves a reloadable checkpoint.

    Unlike `yolo train model=pruned.pt`, the trainer does not rebuild the network from the
    original yaml, so the pruned widths survive. By default the unpruned model it was pruned
    from teaches it (knowledge distillation on the head outputs) as well as the labels.
    """
    import edgeprune

    if teacher and no_distill:
        raise click.BadParameter("--distill and --no-distill contradict each other; give one",
                                 param_hint="'--no-distill'")

    refuse_ignored(distill_weight=no_distill and "with --no-distill")
    check_stride(imgsz)
    check_data(data, ("train", "val"), strict)
    imgsz = resolve_imgsz(checkpoint, imgsz, fallback=640)
    with stdout_to_stderr(as_json):
        result = edgeprune.finetune(checkpoint, data, out, epochs=epochs, imgsz=imgsz, batch=batch,
                                    teacher=None if no_distill else (teacher or "auto"), distill_weight=distill_weight,
                                    device=device, workers=workers, seed=seed, lr0=lr0)
    for note in result.notes:
        console(stderr=True).print(f"[yellow]note:[/yellow] {note}")
    _render(result, "Fine-tuning finished", as_json)
