"""``edgeprune deploy <target>``: build a runnable artifact from any model source and prove it by running it.

One subcommand per registered target, made from what the target declares (precisions,
device, options), all running the one pipeline :func:`toolchain.pipelines.deploy.deploy`.
"""

from __future__ import annotations

import click

from toolchain.cli.opts import (
    OutputPath,
    existing_file,
    imgsz_option,
    input_shape_option,
    json_option,
    refuse_ignored,
    resolve_imgsz,
    strict_option,
    weights_option,
)
from toolchain.cli.render import console, print_json, progress, stdout_to_stderr, table
from toolchain.core.formatting import human_bytes


def _common(func):
    """Options every deploy target takes."""
    for option in reversed([
        click.argument("model", type=existing_file),
        click.option("--out", required=True, type=OutputPath("dir"), help="Output folder."),
        weights_option,
        click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "int8"]), default="auto",
                     show_default=True,
                     help="auto: build every precision the target supports, measure each on this device, keep the "
                          "fastest whose mAP50-95 drop is within --max-drop (INT8 and accuracy need --data)."),
        click.option("--max-drop", type=click.FloatRange(min=0), default=None,
                     help="Largest accepted mAP50-95 drop vs the torch source (absolute; default 0.01 with auto). "
                          "With --precision int8 on OpenVINO: accuracy-aware quantization."),
        click.option("--data", type=existing_file, default=None,
                     help="YOLO data.yaml: INT8 calibration images (train split) and the artifact's mAP (val split)."),
        click.option("--calib-images", type=click.IntRange(min=1), default=300, show_default=True,
                     help="Calibration images for INT8."),
        imgsz_option(rect=True),
        input_shape_option,
        click.option("--no-eval", is_flag=True, help="Skip the artifact's mAP evaluation on --data."),
        click.option("--dynamic-shape", is_flag=True,
                     help="Leave input height/width dynamic, so the artifact also runs at other sizes "
                          "(e.g. bench --streams 4 --splice 832)."),
        click.option("--decode", is_flag=True,
                     help="Darknet cfgs: output OpenCV DNN's decoded yolo rows instead of the raw head maps."),
        click.option("--bn-eps", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Darknet cfgs: BatchNorm epsilon (default Darknet's 1e-5; 1e-6 reproduces OpenCV's importer)."),
        strict_option,
        json_option,
    ]):
        func = option(func)
    return func


def run_deploy(target_name, model, out, weights, precision, max_drop, data, calib_images, imgsz, input_shape, no_eval,
               dynamic_shape, decode, bn_eps, as_json, device, strict=False, **target_options) -> None:
    """Parse → one API call (:func:`edgeprune.deploy`) → render; shared by ``cfg2ir``."""
    import edgeprune

    refuse_ignored(
        calib_images=precision in ("fp32", "fp16") and f"with --precision {precision} (only INT8 calibrates)",
        max_drop=precision in ("fp32", "fp16") and f"with --precision {precision} (it bounds auto and INT8)",
        no_eval=not data and "without --data (nothing is evaluated)",
    )
    if isinstance(imgsz, tuple):  # H W: the input shape of a Darknet cfg or plain module (3 channels)
        if input_shape is not None:
            raise click.UsageError("give --imgsz H W or --input-shape, not both")
        input_shape, imgsz = (1, 3, *imgsz), None
    imgsz = resolve_imgsz(model, imgsz) if input_shape is None else imgsz
    with stdout_to_stderr(as_json), progress(f"deploying to {target_name} ({precision})") as status:
        result = edgeprune.deploy(model, target_name, out, precision=precision, data=data, imgsz=imgsz,
                                  input_shape=input_shape, max_drop=max_drop, calib_images=calib_images, device=device,
                                  weights=weights, dynamic=dynamic_shape, decode=decode, bn_eps=bn_eps,
                                  evaluate=not no_eval, strict=strict, progress=status, **target_options)
    _notes(result.record.get("notes", []))
    if as_json:
        print_json(result)
        return
    _render(target_name, result)


def _notes(notes) -> None:
    from rich.markup import escape

    for note in notes:  # on stderr, so --json output stays parseable; notes quote "[section]" names
        console(stderr=True).print(f"[yellow]note:[/yellow] {escape(note)}")


def _render(target_name: str, result) -> None:
    rec = result.record
    if rec.get("dry_run"):
        console().print(f"workspace: {rec['workspace']}\ndocker commands (also in "
                        f"{rec['workspace'].rsplit('/', 1)[0]}/docker_commands.sh):")
        for command in rec["docker_commands"]:
            click.echo(command)
        return
    fid, run = rec["fidelity"], rec.get("runner")
    rows = [["artifact", result.artifact],
            ["source", f"{rec['source']['kind']}: " + ", ".join(f['path'] for f in rec["source"]["files"])],
            ["precision (stored / executed)", f"{rec['precision']} / {run['executed_precision'] if run else 'on the board'}"]]
    if run:
        rows.append(["device", run["device"]])
    source_bytes = sum(f["bytes"] or 0 for f in rec["source"]["files"])
    rows.append(["size", f"{human_bytes(rec['artifact_bytes'])} (source {human_bytes(source_bytes)})"])
    if "max_rel_diff" in fid:
        rows.append(["max |output - torch|", f"{fid['max_abs_diff']:.3g} (relative {fid['max_rel_diff']:.3g})"])
    else:
        rows.append(["max |output - torch|", f"{fid['max_abs_diff']:.3g} ({fid.get('what', '')})"])
    for key, label in (("compile", "DPU subgraphs (compiler)"),):
        if key in rec:
            rows.append([label, rec[key]["dpu_subgraphs"]])
    if "accuracy" in rec:
        acc = rec["accuracy"]
        rows.append(["mAP50-95 artifact / torch", f"{acc['artifact']['map50_95']:.4f} / {acc['torch_fp32']['map50_95']:.4f}"])
        rows.append(["mAP50 artifact / torch", f"{acc['artifact']['map50']:.4f} / {acc['torch_fp32']['map50']:.4f}"])
    choice = rec.get("precision_choice")
    if choice:
        rows.append(["precision chosen", choice["why"]])
    caption = f"record: {result.deploy_json}"
    if "speed" in rec:
        caption += f"; FPS: {rec['speed']}"
    console().print(table(f"Deployed to {target_name}", ["", "value"], rows, caption=caption))


def _click_option(opt) -> click.Option:
    """A target's declared :class:`targets.base.TargetOption` as a click option."""
    names = [opt.flag, opt.key]
    if opt.is_flag:
        return click.Option(names, is_flag=True, default=bool(opt.default), help=opt.help)
    if opt.choices:
        kind = click.Choice(opt.choices)
    elif opt.type is float:
        kind = click.FloatRange(min=opt.min, min_open=opt.min is not None)
    elif opt.type is int:
        kind = click.IntRange(min=opt.min, min_open=opt.min is not None)
    else:
        kind = click.STRING
    return click.Option(names, type=kind, default=opt.default, show_default=opt.default is not None,
                        help=opt.help)


def pipeline_command(target) -> click.Command:
    """``deploy <target>`` for a registered target: the common options, its precisions, device and options."""

    def run(**kwargs):
        run_deploy(target.name, **kwargs)

    command = click.command(target.name, help=target.summary, short_help=target.summary)(_common(run))
    for param in command.params:
        if param.name == "precision":
            param.type = click.Choice(("auto",) + tuple(target.precisions))
    command.params.append(click.Option(["--device"], default=target.default_device, show_default=True,
                                       help=target.device_help))
    command.params += [_click_option(opt) for opt in target.options]
    return command


class _TargetGroup(click.Group):
    """One ``deploy`` subcommand per registered target that builds artifacts, made when asked.

    So a new target (one module under ``targets/``) appears here without an edit to the CLI.
    """

    def list_commands(self, ctx):
        from targets.registry import deploy_targets

        return deploy_targets()

    def get_command(self, ctx, name):
        from targets.registry import deploy_targets, get_target

        return pipeline_command(get_target(name)) if name in deploy_targets() else None


@click.group(cls=_TargetGroup)
def deploy() -> None:
    """Export a model (Ultralytics .pt, torch module, Darknet .cfg + --weights) to a runtime and check the artifact.

    Targets: OpenVINO, ONNX Runtime, Vitis AI for the KV260 DPU, and any other registered one.
    """
