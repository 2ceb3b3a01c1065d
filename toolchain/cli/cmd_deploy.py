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


def _run(target, model, out, precision, data, calib_images, imgsz, input_shape, no_eval, dynamic_shape, as_json,
         device, max_drop=None) -> None:
    from targets.base import ExportConfig
    from targets.deploy import deploy

    imgsz = resolve_imgsz(model, imgsz, fallback=640)
    cfg = ExportConfig(precision=precision, imgsz=imgsz, data=data, calib_images=calib_images, max_drop=max_drop,
                       device=device, dynamic=dynamic_shape)
    with stdout_to_stderr(as_json), console(stderr=True).status(f"deploying to {target} ({precision})"):
        result = deploy(target, model, out, cfg, input_shape=input_shape, evaluate=not no_eval)
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
    console().print(table(f"Deployed to {target}", ["", "value"], rows, caption=f"record: {result.deploy_json}"))


@click.group()
def deploy() -> None:
    """Export a model to a runtime (OpenVINO, ONNX Runtime, Vitis AI for the KV260 DPU) and check the artifact."""


@deploy.command("openvino")
@_common
@click.option("--device", default="CPU", show_default=True, help="OpenVINO device: CPU, GPU, NPU, AUTO.")
@click.option("--max-drop", type=click.FloatRange(min=0, min_open=True), default=None,
              help="INT8 with accuracy control: largest accepted mAP50-95 drop (e.g. 0.01).")
def deploy_openvino(model, out, precision, data, calib_images, imgsz, input_shape, no_eval, dynamic_shape, as_json,
                    device, max_drop) -> None:
    """OpenVINO IR (Ultralytics layout, so YOLO(folder) runs it too); INT8 through NNCF."""
    if max_drop is not None and precision != "int8":
        raise click.BadParameter("--max-drop applies to --precision int8 only", param_hint="--max-drop")
    _run("openvino", model, out, precision, data, calib_images, imgsz, input_shape, no_eval, dynamic_shape, as_json,
         device, max_drop)


@deploy.command("onnx")
@_common
@click.option("--device", type=click.Choice(["cpu", "cuda", "tensorrt"]), default="cpu", show_default=True,
              help="ONNX Runtime execution provider used to check the artifact.")
@click.option("--dynamic", is_flag=True, help="Dynamic INT8 quantisation (refused for conv models, with the reason).")
def deploy_onnx(model, out, precision, data, calib_images, imgsz, input_shape, no_eval, dynamic_shape, as_json,
                device, dynamic) -> None:
    """ONNX (simplified with onnxslim); INT8 is static QDQ per-channel with the head's decode in float."""
    if dynamic:
        from targets.onnxruntime import DYNAMIC_REFUSAL
        from toolchain.errors import EdgepruneError

        raise EdgepruneError(DYNAMIC_REFUSAL)
    _run("onnx", model, out, precision, data, calib_images, imgsz, input_shape, no_eval, dynamic_shape, as_json,
         device)


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
