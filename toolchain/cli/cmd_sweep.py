"""``edgeprune sparsify``, ``edgeprune sweep`` and ``edgeprune report``: find and document the pruning point."""

from __future__ import annotations

import click

from toolchain.cli.opts import (
    OutputPath,
    cache_option,
    resume_option,
    deploy_target_choice,
    existing_file,
    head_ratio_option,
    imgsz_option,
    json_option,
    method_choice,
    open_ratio,
    refuse_ignored,
    resolve_imgsz,
    strict_option,
    weights_option,
)
from toolchain.cli.render import console, print_json, progress, stdout_to_stderr, table
from toolchain.core.device import DEVICE_HELP


def _ratios(ctx, param, value):
    from toolchain.pipelines.sweep import SweepError, parse_ratios

    try:
        ratios = parse_ratios(value)
    except SweepError as exc:
        raise click.BadParameter(str(exc)) from None
    if not ratios or any(not 0.0 < r < 1.0 for r in ratios):
        raise click.BadParameter(f"every ratio must lie strictly between 0 and 1, got {list(ratios)}")
    return ratios


@click.command()
@click.argument("model", type=existing_file)
@click.option("--data", required=True, type=existing_file, help="YOLO data.yaml to train on.")
@click.option("--ratio", type=float, callback=open_ratio, default=None,
              help="The prune the model is prepared for: the channels it removes go to zero (as `prune --ratio`). "
                   "[default: 0.5]")
@click.option("--method", type=method_choice, default=None,
              help="Criterion choosing those channels (as `prune --method`; not taylor). [default: bn]")
@click.option("--global", "global_pruning", is_flag=True, help="Rank channels across layers (as `prune --global`).")
@click.option("--round-to", type=click.IntRange(min=1), default=None,
              help="Channel multiple of that prune (as `prune --round-to`). [default: 8]")
@head_ratio_option()
@click.option("--hold", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
              help="Final fraction of the run with those channels held at zero (the network adapts to their "
                   "absence). [default: 0.4]")
@click.option("--layers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Residual units the prune also removes (as `prune --layers`): their last BatchNorm goes to zero "
                   "too, so each unit computes its input and removing it changes nothing.")
@click.option("--s", "strength", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Darknet cfgs: L1 strength on BatchNorm gamma, as a proximal step after each SGD step "
                   "[default: 1e-3].")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@imgsz_option()
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True, help="Data loader workers.")
@click.option("--lr0", type=click.FloatRange(min=0, min_open=True), default=None, help="Initial learning rate (SGD).")
@click.option("--warmup-epochs", type=click.FloatRange(min=0), default=None,
              help="Warm-up epochs (default: Ultralytics' 3).")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@cache_option
@resume_option
@click.option("--out", required=True, type=OutputPath("dir"),
              help="Run folder: weights/, gamma_hist_*.png and sparsity.json.")
@weights_option
@click.option("--burn-in", type=click.IntRange(min=0), default=None,
              help="Darknet cfgs: warm-up iterations (default: the cfg's burn_in, at most a tenth of the run).")
@click.option("--seed", type=int, default=0, show_default=True, help="Darknet cfgs: seed of the data order.")
@strict_option
@json_option
def sparsify(model, data, ratio, method, global_pruning, round_to, head_ratio, hold, layers, strength, epochs, imgsz,
             batch, workers, lr0, warmup_epochs, device, cache, resume, out, weights, burn_in, seed, strict,
             as_json) -> None:
    """Sparsity-train MODEL so that the prune you will run removes only dead channels.

    The BatchNorm scale and shift of exactly the channels `prune --ratio R --method bn` (with the
    same --global, --round-to and --head-ratio) would remove are ramped to zero while the rest of the
    network trains, then held at zero for the last --hold of the run; each epoch prints the share of
    gammas below 1e-3/1e-2/0.1 and the mAP50-95. Prune OUT/weights/last.pt with those settings
    and `--method bn`: no output changes. With --layers N the N residual units `prune --layers N`
    removes are driven to identity as well. A Darknet .cfg trains from --weights (default: the
    .weights beside it) with the L1 penalty --s instead; prune its OUT/weights/last.cfg +
    last.weights with `cfg-prune --global-percent`.
    """
    import edgeprune
    from toolchain.cli.cmd_train import _epoch_printer, _render_history

    imgsz = resolve_imgsz(model, imgsz, fallback=640)
    with stdout_to_stderr(as_json), progress(f"sparsity training, {epochs} epochs"):
        result = edgeprune.sparsify(model, data, out, ratio=ratio, method=method, global_pruning=global_pruning,
                                    round_to=round_to, head_ratio=head_ratio, hold=hold, layers=layers,
                                    strength=strength, epochs=epochs, imgsz=imgsz, batch=batch, workers=workers,
                                    lr0=lr0, warmup_epochs=warmup_epochs, device=device, weights=weights, burn_in=burn_in,
                                    seed=seed, cache=cache, resume=resume, strict=strict,
                                    on_epoch=_epoch_printer(as_json))
    if as_json:
        print_json(result)
        return
    _render_history(result.train, as_json)
    thresholds = sorted(result.final.below, key=float)
    rows = [[s.epoch, s.l1_mean] + [s.below[t] for t in thresholds] + [s.map50_95] for s in result.snapshots]
    caption = [f"weights: {result.weights}", f"histograms and sparsity.json in {result.run_dir}"]
    if result.prune:
        caption.insert(0, f"{result.channels:,} BatchNorm channels driven to zero for `prune --ratio "
                          f"{result.prune['ratio']} --method bn{' --global' if result.prune['global_pruning'] else ''}"
                          f"{f' --layers {len(result.units)}' if result.units else ''}`;"
                          f" mAP50-95 {result.start_map50_95:.3f} -> {result.map50_95:.3f}")
    else:
        caption.insert(0, f"L1 penalty s = {result.strength:g} on every BatchNorm gamma")
    for note in result.notes:
        console(stderr=True).print(f"[yellow]note:[/yellow] {note}")
    console().print(table("BatchNorm gamma during sparsity training",
                          ["epoch", "mean |gamma|"] + [f"< {t}" for t in thresholds] + ["mAP50-95"], rows,
                          caption="\n".join(caption)))


def _counts(ctx, param, value):
    """A comma list of positive integers (``--shortcut-grid 2,4,8``)."""
    try:
        counts = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"must be comma-separated whole numbers, e.g. 2,4,8; got {value!r}") from None
    if any(c < 1 for c in counts):
        raise click.BadParameter(f"every count must be at least 1, got {list(counts)}")
    return counts


@click.command()
@click.argument("model", type=existing_file)
@click.option("--data", required=True, type=existing_file, help="YOLO data.yaml (val split scored, train fine-tunes).")
@click.option("--ratios", default="0.1:0.9:0.1", show_default=True, callback=_ratios,
              help="START:STOP:STEP (stop included) or a comma list.")
@click.option("--method", type=method_choice, default="l1", show_default=True, help="Channel importance.")
@click.option("--global", "global_pruning", is_flag=True, help="Rank channels across layers.")
@click.option("--round-to", type=click.IntRange(min=1), default=8, show_default=True,
              help="Keep channel counts multiples of this (1 = no rounding).")
@head_ratio_option("each point's ratio")
@click.option("--finetune-epochs", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--target", type=deploy_target_choice, default="openvino", show_default=True,
              help="Where latency and FPS are measured (FP32 artifact).")
@click.option("--refine", is_flag=True, help="Bisect between the last good and the first bad ratio.")
@click.option("--refine-steps", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--iterative", "steps", type=click.IntRange(min=1), default=1, show_default=True,
              help="Prune in this many steps (1 = one-shot).")
@click.option("--max-drop", type=click.FloatRange(min=0), default=0.02, show_default=True,
              help="Largest accepted mAP50 drop against the unpruned model.")
@imgsz_option()
@click.option("--bench-iterations", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--device", default="cpu", show_default=True,
              help="Device of the runtime every point is deployed to and measured on (e.g. cpu, GPU).")
@click.option("--train-device", default="auto", show_default=True, help="Torch device for fine-tuning. " + DEVICE_HELP)
@click.option("--executor", type=click.Choice(("local", "ray")), default="local", show_default=True)
@click.option("--ray-address", default=None, help="Address of an existing Ray cluster (default: start a local one).")
@click.option("--out", required=True, type=OutputPath("dir"),
              help="Run folder; rerunning with the same folder resumes.")
@weights_option
@click.option("--shortcuts", type=click.IntRange(min=0), default=0, show_default=True,
              help="Darknet cfgs: also remove this many residual units at every pruned point (cfg-prune --shortcuts).")
@click.option("--keep", type=click.FloatRange(min=0, max=1, max_open=True), default=0.01, show_default=True,
              help="Darknet cfgs: every pruned conv keeps at least this fraction of its channels.")
@click.option("--shortcut-grid", default="", callback=_counts,
              help="Darknet cfgs: after choosing the percent, try it with each of these counts of residual units "
                   "removed (e.g. 2,4,8) and keep the fastest within --max-drop.")
@click.option("--finetune-chosen", type=click.IntRange(min=0), default=0, show_default=True,
              help="Fine-tune the finally chosen model for this many epochs and report it beside its point.")
@strict_option
@json_option
def sweep(model, data, ratios, method, global_pruning, round_to, head_ratio, finetune_epochs, target, refine,
          refine_steps, steps, max_drop, imgsz, bench_iterations, device, train_device, executor, ray_address, out,
          weights, shortcuts, keep, shortcut_grid, finetune_chosen, strict, as_json) -> None:
    """Prune MODEL at several ratios, measure each on TARGET and pick the optimal pruning point.

    MODEL is an Ultralytics checkpoint (ratio = Torch-Pruning's channel ratio) or a Darknet .cfg
    with --weights (ratio = cfg-prune's global BN-gamma percent). Every point is appended to
    OUT/sweep.jsonl as soon as it is measured; an interrupted sweep rerun with the same settings
    skips the points already there.
    """
    import edgeprune

    refuse_ignored(refine_steps=not refine and "without --refine")
    imgsz = resolve_imgsz(model, imgsz)

    err = console(stderr=True)
    planned = 1 + len(ratios) + (refine_steps if refine else 0) + len(shortcut_grid)  # baseline, grid, bisections...
    measured = []

    def on_point(p) -> None:
        measured.append(p)
        status.advance(len(measured), planned)
        removed = f" - {p.shortcuts} residual units" if p.shortcuts else ""
        err.print(f"ratio {p.ratio:g}{removed}: mAP50 {p.map50:.3f}, {p.fps:.1f} FPS ({p.seconds:.0f} s)")

    with stdout_to_stderr(as_json), progress("sweeping") as status:
        result = edgeprune.sweep(
            model, data, out, ratios=ratios, target=target, max_drop=max_drop, finetune_epochs=finetune_epochs,
            method=method, global_pruning=global_pruning, round_to=round_to, head_ratio=head_ratio, steps=steps,
            imgsz=imgsz, refine=refine,
            refine_steps=refine_steps, bench_iterations=bench_iterations, device=device, train_device=train_device,
            weights=weights,
            shortcuts=shortcuts, keep=keep, shortcut_grid=shortcut_grid, finetune_chosen=finetune_chosen,
            executor=executor, ray_address=ray_address, strict=strict,
            on_point=on_point, progress=status)
    if as_json:
        print_json(result)
        return
    from toolchain.pipelines.report import COLUMNS, table_rows

    base = (f"speedup vs the fastest Ultralytics export of the unpruned model "
            f"({result.base['label']}, {result.base_fps:.1f} FPS)"
            if result.base else "no Ultralytics export measured: no speedup column")
    for note in result.notes:
        err.print(f"[yellow]note:[/yellow] {note}")
    console().print(table("Pruning sweep", COLUMNS, table_rows(result.points, result.base_fps),
                          caption=f"optimal pruning point: {result.choice.ratio} — {result.choice.reason}\n"
                                  f"{result.computed} points measured, {result.resumed} resumed from {out}/sweep.jsonl"
                                  f"\n{base}; FPS: inference only, batch 1, {result.config.target}"
                                  + (f"\nthe head's inner convs lose {result.config.head_ratio:g} of their channels "
                                     "at every point" if result.config.head_ratio is not None else "")))
    if result.shortcut_points:
        console().print(table(f"Residual units removed at ratio {result.shortcut_points[0].ratio:g}",
                              ["shortcuts"] + COLUMNS[1:],
                              [[p.shortcuts] + row[1:] for p, row in
                               zip(result.shortcut_points, table_rows(result.shortcut_points, result.base_fps))]))
    if result.finetuned:
        f = result.finetuned
        console().print(table("Chosen model fine-tuned", ["ratio", "shortcuts", "epochs", "mAP50 before", "mAP50",
                                                          "mAP50-95 before", "mAP50-95", "model"],
                              [[f.ratio, f.shortcuts, f.epochs, f.before_map50, f.map50, f.before_map50_95,
                                f.map50_95, f.model]]))


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--no-curves", is_flag=True, help="Skip validating the chosen model for PR/F1 curves.")
@json_option
def report(run_dir, no_curves, as_json) -> None:
    """Write RUN_DIR/report.html (self-contained) and RUN_DIR/report.md from a sweep run folder."""
    import edgeprune

    with stdout_to_stderr(as_json), progress("writing the report") as status:
        result = edgeprune.report(run_dir, curves=not no_curves, progress=status)
    if as_json:
        print_json(result)
        return
    console().print(table("Report", ["file", "images", "points", "chosen ratio"],
                          [[result.html, len(result.images), result.points, result.chosen_ratio],
                           [result.markdown, len(result.images), result.points, result.chosen_ratio]],
                          caption="\n".join(result.notes) or None))
