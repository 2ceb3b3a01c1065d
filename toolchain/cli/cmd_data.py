"""``edgeprune data ...``: data sets edgeprune makes itself."""

from __future__ import annotations

import click

from toolchain.cli.opts import OutputPath, json_option
from toolchain.cli.render import console, print_json, progress, table


@click.group()
def data() -> None:
    """Make data sets (the synthetic default used by the demo and the tests)."""


@data.command("synth")
@click.argument("out", type=OutputPath("dir"))
@click.option("--train", "n_train", type=click.IntRange(min=1), default=400, show_default=True, help="Training images.")
@click.option("--val", "n_val", type=click.IntRange(min=1), default=100, show_default=True, help="Validation images.")
@click.option("--imgsz", type=click.IntRange(min=64, max=4096), default=256, show_default=True,
              help="Image side in pixels.")
@click.option("--classes", type=click.IntRange(1, 6), default=3, show_default=True, help="Number of shape classes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; same seed, same files.")
@json_option
def synth(out, n_train, n_val, imgsz, classes, seed, as_json) -> None:
    """Write a deterministic synthetic detection data set in YOLO format to OUT.

    Shapes of several classes with varied size, colour, background and occlusion; OUT gets
    images/, labels/ and a data.yaml usable by every edgeprune and Ultralytics command.
    """
    import edgeprune

    with progress(f"rendering {n_train + n_val} images") as status:
        result = edgeprune.synth(out, train=n_train, val=n_val, imgsz=imgsz, classes=classes, seed=seed,
                                 progress=status)
    if as_json:
        print_json(result)
        return
    console().print(table(
        f"Synthetic data set in {result.root}",
        ["split", "images", "objects"],
        [["train", result.train_images, result.train_objects], ["val", result.val_images, result.val_objects]],
        caption=f"classes: {', '.join(result.names)}  data file: {result.data_yaml}",
    ))
