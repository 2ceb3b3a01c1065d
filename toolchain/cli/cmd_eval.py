"""``edgeprune eval``: accuracy of a checkpoint or of a deployed artifact on a YOLO data set."""

from __future__ import annotations

from pathlib import Path

import click

from toolchain.cli.opts import (
    compute_precision_choice,
    eval_backend_choice,
    existing_file,
    imgsz_option,
    json_option,
    resolve_imgsz,
    strict_option,
    weights_option,
)
from toolchain.cli.render import console, print_json, progress, stdout_to_stderr, table


@click.command("eval")
@click.argument("model", type=click.Path(exists=True))
@weights_option
@click.option("--data", required=True, type=existing_file, help="YOLO data.yaml.")
@imgsz_option()
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True,
              help="Batch size of the Ultralytics validator (checkpoints only).")
@click.option("--split", type=click.Choice(["val", "test", "train"]), default="val", show_default=True)
@click.option("--backend", type=eval_backend_choice, default="auto",
              show_default=True,
              help="auto: the Ultralytics validator for .pt checkpoints, the artifact's runtime otherwise; "
                   "torch: a .pt through edgeprune's pipeline, comparable with artifacts.")
@click.option("--device", default="cpu", show_default=True, help="Device for artifacts (e.g. CPU, GPU, cuda).")
@click.option("--infer-precision", type=compute_precision_choice, default="auto", show_default=True,
              help="Compute precision to force where the runtime allows (auto = the runtime's choice, reported).")
@strict_option
@json_option
def eval_cmd(model, weights, data, imgsz, batch, split, backend, device, infer_precision, strict, as_json) -> None:
    """mAP50, mAP50-95, precision and recall of MODEL on DATA, overall and per class.

    MODEL is a .pt checkpoint, a Darknet .cfg (with --weights), or a deployed artifact (OpenVINO
    IR folder, .onnx, or a deploy folder). Artifacts and cfgs are run with the pre-processing the
    model was trained with (letterbox; Darknet: stretch unless letter_box=1), their own box decode
    (Darknet: anchors, scale_x_y, new_coords), then the shared NMS and metrics.
    ONNX and OpenVINO artifacts of Ultralytics models are also run through the Ultralytics
    validator, and both numbers are shown with their difference.
    """
    imgsz = resolve_imgsz(model, imgsz)
    import edgeprune
    from toolchain.models.validator import EvalResult

    with stdout_to_stderr(as_json), progress("evaluating") as status:
        result = edgeprune.evaluate(model, data, imgsz=imgsz, batch=batch, split=split, backend=backend,
                                    device=device, infer_precision=infer_precision, weights=weights,
                                    strict=strict, progress=status)
    if isinstance(result, EvalResult):  # edgeprune.evaluate chose the Ultralytics validator
        per_class = [[c.name, c.precision, c.recall, c.map50, c.map50_95] for c in result.per_class]
        caption = f"{result.model} on {result.data} ({split}), imgsz {result.imgsz}, Ultralytics validator"
        if result.pose_map50 is not None:
            caption += f"; pose mAP50 {result.pose_map50:.4f}, mAP50-95 {result.pose_map50_95:.4f}"
    else:
        per_class = [[name, v["precision"], v["recall"], v["map50"], v["map50_95"]]
                     for name, v in result.per_class.items()]
        run = result.runner
        shown = result.imgsz if isinstance(result.imgsz, int) else "x".join(map(str, result.imgsz))
        if imgsz is None:  # say which size ran, and why
            console(stderr=True).print(f"note: input {shown}, the size {Path(model).name} was built at "
                                       "(--imgsz applies to dynamic-shape artifacts)", markup=False)
        caption = (f"{result.artifact} on {result.data} ({split}), input {shown}, {run['backend']} "
                   f"{run['backend_version']} on {run['device']}, executed precision {run['executed_precision']}")
        if result.ultralytics:
            ul = result.ultralytics
            caption += (f"\nUltralytics validator on the same artifact: mAP50 {ul['map50']:.4f}, mAP50-95 "
                        f"{ul['map50_95']:.4f} (edgeprune - validator: {ul['difference_map50_95'] * 100:+.2f} points; "
                        f"{ul['why']})")
    if as_json:
        print_json(result)
        return
    rows = [["all", result.precision, result.recall, result.map50, result.map50_95]] + per_class
    console().print(table("Accuracy", ["class", "P", "R", "mAP50", "mAP50-95"], rows, caption=caption))
