"""``edgeprune deploy <target>``: build a runnable artifact and prove it by running it."""

from __future__ import annotations

import click

from toolchain.cli.opts import existing_file, imgsz_option, input_shape_option, json_option, resolve_imgsz
from toolchain.cli.render import console, human_bytes, print_json, stdout_to_stderr, table


def _common(func):
    """Options every deploy target takes."""
    for option in reversed([
        click.argument("model", type=existing_file),
        click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder."),
        click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True),
        click.option("--data", type=existing_file, default=None,
                     help="YOLO data.yaml: INT8 calibration images (train split) and the artifact's mAP (val split)."),
        click.option("--calib-images", type=click.IntRange(min=1), default=300, show_default=True,
                     help="Calibration images for INT8."),
        imgsz_option(),
        input_shape_option,
        click.option("--no-eval", is_flag=True, help="Skip the artifact's mAP evaluation on --data."),
        click.option("--dynamic-shape", is_flag=True,
                     help="Leave input height/width dynamic, so the artifact also runs at other sizes "
                          "(e.g. bench --streams 4 --splice 832)."),
        json_option,
    ]):
        func = option(func)
    return func


def _run(target_name, model, out, precision, data, calib_images, imgsz, input_shape, no_eval, dynamic_shape, as_json,
         device, **target_options) -> None:
    import dataclasses

    from targets.base import ExportConfig
    from targets.deploy import deploy

    imgsz = resolve_imgsz(model, imgsz, fallback=640)
    fields = {f.name for f in dataclasses.fields(ExportConfig)}
    direct = {k: v for k, v in target_options.items() if k in fields}
    cfg = ExportConfig(precision=precision, imgsz=imgsz, data=data, calib_images=calib_images, device=device,
                       dynamic=dynamic_shape, options={k: v for k, v in target_options.items() if k not in fields},
                       **direct)
    with stdout_to_stderr(as_json), console(stderr=True).status(f"deploying to {target_name} ({precision})"):
        result = deploy(target_name, model, out, cfg, input_shape=input_shape, evaluate=not no_eval)
    if as_json:
        print_json(result)
        return
    rec = result.record
    fid, run = rec["fidelity"], rec["runner"]
    rows = [
        ["artifact", result.artifact],
        ["precision (stored / executed)", f"{rec['precision']} / {run['executed_precision']}"],
        ["device", run["device"]],
        ["size", f"{human_bytes(rec['artifact_bytes'])} (source {human_bytes(rec['source']['bytes'])})"],
        ["max |output - torch|", f"{fid['max_abs_diff']:.3g} (relative {fid['max_rel_diff']:.3g})"],
    ]
    if "accuracy" in rec:
        acc = rec["accuracy"]
        rows.append(["mAP50-95 artifact / torch", f"{acc['artifact']['map50_95']:.4f} / {acc['torch_fp32']['map50_95']:.4f}"])
        rows.append(["mAP50 artifact / torch", f"{acc['artifact']['map50']:.4f} / {acc['torch_fp32']['map50']:.4f}"])
    console().print(table(f"Deployed to {target_name}", ["", "value"], rows, caption=f"record: {result.deploy_json}"))


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
        _run(target.name, **kwargs)

    command = click.command(target.name, help=target.summary, short_help=target.summary)(_common(run))
    for param in command.params:
        if param.name == "precision":
            param.type = click.Choice(target.precisions)
            param.default = "fp32" if "fp32" in target.precisions else target.precisions[0]
    command.params.append(click.Option(["--device"], default=target.default_device, show_default=True,
                                       help=target.device_help))
    command.params += [_click_option(opt) for opt in target.options]
    return command


class _TargetGroup(click.Group):
    """One ``deploy`` subcommand per registered target that builds artifacts, made when asked.

    So a new target (one module under ``targets/``) appears here without an edit to the CLI.
    Targets whose flow is not the shared pipeline yet register an explicit command (vitis).
    """

    def list_commands(self, ctx):
        from targets.registry import deploy_targets

        return sorted(set(deploy_targets()) | set(self.commands))

    def get_command(self, ctx, name):
        if name in self.commands:
            return self.commands[name]
        from targets.registry import deploy_targets, get_target

        return pipeline_command(get_target(name)) if name in deploy_targets() else None


@click.group(cls=_TargetGroup)
def deploy() -> None:
    """Export a model to a runtime (OpenVINO, ONNX Runtime, Vitis AI for the KV260 DPU) and check the artifact."""


@deploy.command("vitis")
@click.argument("model", type=existing_file)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--board", type=click.Choice(["kv260"]), default="kv260", show_default=True,
              help="Target board (KV260: DPUCZDX8G_ISA1_B4096).")
@click.option("--data", required=True, type=existing_file,
              help="YOLO data.yaml: calibration images (train split) and the quantised model's mAP (val split).")
@click.option("--calib-images", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--eval-images", type=click.IntRange(min=0), default=100, show_default=True,
              help="Validation images the quantised model is scored on in the container (0 = skip).")
@imgsz_option()
@click.option("--fast-finetune", is_flag=True, help="vai_q_pytorch fast fine-tuning (AdaQuant) while calibrating.")
@click.option("--image", default="xilinx/vitis-ai-pytorch-cpu:latest", show_default=True,
              help="Vitis AI PyTorch Docker image (or one built from docker/vitis-ai/Dockerfile).")
@click.option("--dry-run", is_flag=True, help="Write the workspace and print the docker commands; run nothing.")
@click.option("--allow-cpu-subgraphs", is_flag=True, help="Accept a compiled model with more than one DPU subgraph.")
@json_option
def deploy_vitis(model, out, board, data, calib_images, eval_images, imgsz, fast_finetune, image, dry_run,
                 allow_cpu_subgraphs, as_json) -> None:
    """Kria KV260 DPU: quantise (vai_q_pytorch) and compile (vai_c_xir) in the Vitis AI Docker image.

    Writes OUT/workspace (mounted at /workspace), OUT/board (xmodel, metadata.yaml, run_kv260.py)
    and OUT/deploy.json. Fails unless the compiler reports one DPU subgraph.
    """
    from targets.vitis.deploy import VitisConfig, deploy_vitis as run_deploy

    imgsz = resolve_imgsz(model, imgsz, fallback=640)
    cfg = VitisConfig(board=board, data=data, imgsz=imgsz, calib_images=calib_images, eval_images=eval_images,
                      fast_finetune=fast_finetune, image=image, dry_run=dry_run,
                      allow_cpu_subgraphs=allow_cpu_subgraphs)
    status = "writing the workspace" if dry_run else "quantizing and compiling in Docker (minutes)"
    with stdout_to_stderr(as_json), console(stderr=True).status(status):
        result = run_deploy(model, out, cfg)
    for note in result.notes:
        console(stderr=True).print(f"[yellow]note:[/yellow] {note}")
    if as_json:
        print_json(result)
        return
    if dry_run:
        console().print(f"workspace: {result.workspace}\ndocker commands (also in {out}/docker_commands.sh):")
        for command in result.commands:
            click.echo(command)
        return
    rec = result.record
    rows = [["board bundle", result.board_dir], ["DPU subgraphs (compiler)", rec["compile"]["dpu_subgraphs"]],
            ["size", human_bytes(rec["artifact_bytes"])]]
    if "accuracy" in rec:
        acc = rec["accuracy"]
        rows.append(["mAP50-95 int8 / float", f"{acc['quantized_int8']['map50_95']:.4f} / "
                                              f"{acc['float']['map50_95']:.4f}"])
    console().print(table(f"Deployed to {board} ({rec['dpu']})", ["", "value"], rows,
                          caption=f"record: {result.deploy_json}; FPS: edgeprune board bench --host USER@IP "
                                  f"--bundle {result.board_dir}"))
