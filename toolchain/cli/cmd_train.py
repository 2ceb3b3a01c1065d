"""``edgeprune train`` and ``edgeprune finetune``: the Ultralytics trainer, or the Darknet one for a .cfg."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from toolchain.cli.opts import (
    OutputPath,
    cache_option,
    resume_option,
    existing_file,
    imgsz_option,
    json_option,
    refuse_ignored,
    resolve_imgsz,
    strict_option,
    weights_option,
)
from toolchain.cli.render import console, print_json, progress, stdout_to_stderr, table
from toolchain.core.device import DEVICE_HELP


def _train_options(func):
    for option in reversed([
        click.option("--epochs", type=click.IntRange(min=1), default=15, show_default=True),
        imgsz_option(),
        click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True),
        click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True, help="Data loader workers."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--lr0", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Initial learning rate (SGD); default: Ultralytics' automatic choice, or a Darknet cfg's "
                          "learning_rate."),
        click.option("--device", default="auto", show_default=True, help=DEVICE_HELP),
        cache_option,
        resume_option,
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


def _darknet_options(func):
    for option in reversed([
        weights_option,
        click.option("--burn-in", type=click.IntRange(min=0), default=None,
                     help="Darknet cfgs: warm-up iterations (default: the cfg's burn_in, at most a tenth of the run)."),
    ]):
        func = option(func)
    return func


def _epoch_printer(as_json: bool):
    """Print each epoch's record on stderr as it finishes: a trainer's row, sparsity's gamma record, or a distillation loss."""
    err = console(stderr=True)

    def show(row) -> None:
        if hasattr(row, "distillation_loss"):  # label-free distillation: the loss against the teacher's outputs
            err.print(f"epoch {row.epoch}: distillation loss {row.distillation_loss:.4f}")
            return
        if hasattr(row, "below"):  # sparsity training: the share of gamma near zero and the mAP after the epoch
            below = "  ".join(f"<{t}: {v:.1%}" for t, v in sorted(row.below.items(), key=lambda kv: float(kv[0])))
            score = "-" if row.map50_95 is None else f"{row.map50_95:.3f}"
            err.print(f"epoch {row.epoch}: mean|gamma| {row.l1_mean:.3f}  {below}  mAP50-95 {score}")
            return
        err.print(f"epoch {row.epoch}: lr {row.lr:.3g}  box {row.box:.3f}  obj {row.obj:.3f}  cls {row.cls:.3f}  "
                  f"mAP50 {row.map50:.3f}  mAP50-95 {row.map50_95:.3f}  mean|gamma| {row.gamma_l1:.3f}  "
                  f"({row.seconds:.0f} s)")
    return show


def _render_history(result, as_json: bool) -> None:
    """A Darknet run's per-epoch table (what darknet prints as it trains), before the summary."""
    history = getattr(result, "history", None)
    if as_json or not history:
        return
    console().print(table("Epochs", ["epoch", "lr", "box", "obj", "cls", "mAP50", "mAP50-95", "mean |gamma|", "s"],
                          [[r.epoch, r.lr, r.box, r.obj, r.cls, r.map50, r.map50_95, r.gamma_l1, round(r.seconds)]
                           for r in history]))


def _is_data_file(path: str) -> bool:
    """True for a YOLO data.yaml (a mapping naming its classes), as opposed to a model file."""
    import yaml

    if Path(path).suffix.lower() not in (".yaml", ".yml"):
        return False
    try:
        content = yaml.safe_load(Path(path).read_text(errors="replace"))
    except yaml.YAMLError:
        return True  # a broken yaml is a broken data file: the data check names what is wrong
    return isinstance(content, dict) and ("names" in content or "nc" in content)


def _split_source(source: str, data: str | None, model: str | None) -> tuple[str, str]:
    """(model, data) from ``train SOURCE``: a data.yaml with --model, or a model file (a Darknet cfg) with --data."""
    if _is_data_file(source):
        if data is not None:
            raise click.UsageError(f"--data is for a model-file SOURCE; {source} is the data file here (drop --data)")
        return model or "yolov8n.yaml", source
    if data is None:
        raise click.UsageError(f"training the model {source} needs --data DATA.yaml")
    if model is not None:
        raise click.UsageError("--model is ignored when SOURCE is a model file; drop it")
    return source, data


@click.command()
@click.argument("source", type=existing_file)
@click.option("--model", default=None,
              help="Ultralytics model yaml (built from scratch, offline), checkpoint or Darknet .cfg to start from. "
                   "[default: yolov8n.yaml]")
@click.option("--data", default=None, type=existing_file, help="The data.yaml when SOURCE is a Darknet .cfg.")
@click.option("--out", required=True, type=OutputPath("dir"), help="Run folder; weights go to OUT/weights/.")
@click.option("--converge", type=click.IntRange(min=1), default=None, metavar="N",
              help="Stop once mAP50-95 gained less than 0.3 points over N epochs (--epochs is then the cap); "
                   "the result says at which epoch, or that it did not converge. A checkpoint as --model is "
                   "validated as training starts and counts as epoch 0 (--resume reuses that score).")
@click.option("--from-scratch", is_flag=True,
              help="With a checkpoint as --model: train its architecture (a pruned one too) from fresh weights.")
@_train_options
@_darknet_options
def train(source, model, data, out, converge, from_scratch, epochs, imgsz, batch, workers, seed, lr0, device, cache,
          resume, strict, as_json, weights, burn_in) -> None:
    """Train a YOLO: `train DATA --model M` (Ultralytics trainer) or `train CFG --data DATA` (Darknet).

    A Darknet .cfg trains in PyTorch with its [yolo] loss and its [net] learning-rate policy,
    from scratch or from --weights; OUT/weights/ gets best and last as .cfg + .weights (they load
    in Darknet and OpenCV) and OUT/results.csv one row per epoch. Uses a GPU when present.
    """
    import edgeprune

    model, data = _split_source(source, data, model)
    imgsz = resolve_imgsz(model, imgsz, fallback=640)
    with stdout_to_stderr(as_json), progress(f"training, {epochs} epochs"):
        result = edgeprune.train(data, out, model=model, epochs=epochs, imgsz=imgsz, batch=batch, workers=workers,
                                 seed=seed, lr0=lr0, device=device, weights=weights, burn_in=burn_in,
                                 converge=converge or 0, from_scratch=from_scratch, cache=cache, resume=resume,
                                 strict=strict, on_epoch=_epoch_printer(as_json))
    _notes(result)
    _render_history(result, as_json)
    _render(result, "Training finished", as_json)


def _notes(result) -> None:
    for note in result.notes:
        console(stderr=True).print(f"[yellow]note:[/yellow] {escape(note)}")


@click.command()
@click.argument("checkpoint", type=existing_file)
@click.option("--data", type=existing_file, default=None,
              help="YOLO data.yaml to fine-tune on (with --images: only to score the result).")
@click.option("--images", type=click.Path(exists=True, file_okay=False), default=None,
              help="Fine-tune without labels: learn the teacher's outputs on this folder of images (any images the "
                   "model will see; every model source).")
@click.option("--out", required=True, type=OutputPath("dir"), help="Run folder; weights go to OUT/weights/.")
@click.option("--distill", "teacher", type=existing_file, default=None,
              help="Teacher checkpoint to distil from (its class probabilities and box distributions). "
                   "Default: the unpruned model `prune` recorded, when it is still there unchanged. A Darknet cfg "
                   "with --images: the cfg it was pruned from (its .weights beside it).")
@click.option("--no-distill", is_flag=True, help="Fine-tune on the labels alone.")
@click.option("--distill-weight", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Scale of the distillation loss against the task loss.")
@_train_options
@_darknet_options
def finetune(checkpoint, data, images, out, teacher, no_distill, distill_weight, epochs, imgsz, batch, workers, seed,
             lr0, device, cache, resume, strict, as_json, weights, burn_in) -> None:
    """Fine-tune a (pruned) CHECKPOINT keeping its architecture; saves a reloadable checkpoint.

    Unlike `yolo train model=pruned.pt`, the trainer does not rebuild the network from the
    original yaml, so the pruned widths survive. By default the unpruned model it was pruned
    from teaches it (knowledge distillation on the head outputs) as well as the labels.

    A Darknet .cfg (cfg-prune's output) fine-tunes from --weights (default: the .weights beside
    it) with its [yolo] loss, on the labels; results are saved as .cfg + .weights.
    """
    import edgeprune

    if teacher and no_distill:
        raise click.BadParameter("--distill and --no-distill contradict each other; give one",
                                 param_hint="'--no-distill'")
    refuse_ignored(distill_weight=no_distill and "with --no-distill")
    if images and no_distill:
        raise click.UsageError("--images learns the teacher's outputs; it cannot run with --no-distill")
    imgsz = resolve_imgsz(checkpoint, imgsz, fallback=640)
    with stdout_to_stderr(as_json), progress(f"fine-tuning, {epochs} epochs"):
        result = edgeprune.finetune(checkpoint, data, out, epochs=epochs, imgsz=imgsz, batch=batch,
                                    teacher=None if no_distill else (teacher or "auto"),
                                    distill_weight=distill_weight, device=device, workers=workers, seed=seed, lr0=lr0,
                                    weights=weights, burn_in=burn_in, cache=cache, images=images, resume=resume,
                                    strict=strict, on_epoch=_epoch_printer(as_json))
    _notes(result)
    _render_history(result, as_json)
    _render(result, "Fine-tuning finished", as_json)
