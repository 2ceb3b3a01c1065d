"""``edgeprune eval``: accuracy of a model on a YOLO data set."""

from __future__ import annotations

import click

from toolchain.cli.opts import existing_file, imgsz_option, json_option
from toolchain.cli.render import console, print_json, stdout_to_stderr, table


@click.command("eval")
@click.argument("model", type=existing_file)
@click.option("--data", required=True, type=existing_file, help="YOLO data.yaml.")
@imgsz_option(256)
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--split", type=click.Choice(["val", "test", "train"]), default="val", show_default=True)
@json_option
def eval_cmd(model, data, imgsz, batch, split, as_json) -> None:
    """mAP50, mAP50-95, precision and recall of MODEL on DATA, overall and per class."""
    from toolchain.evaluation import evaluate

    with stdout_to_stderr(as_json):
        result = evaluate(model, data, imgsz=imgsz, batch=batch, split=split)
    if as_json:
        print_json(result)
        return
    rows = [["all", result.precision, result.recall, result.map50, result.map50_95]]
    rows += [[c.name, c.precision, c.recall, c.map50, c.map50_95] for c in result.per_class]
    caption = f"{result.model} on {result.data} ({split}), imgsz {result.imgsz}"
    if result.pose_map50 is not None:
        caption += f"; pose mAP50 {result.pose_map50:.4f}, mAP50-95 {result.pose_map50_95:.4f}"
    console().print(table("Accuracy", ["class", "P", "R", "mAP50", "mAP50-95"], rows, caption=caption))
