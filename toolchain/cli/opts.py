"""Option bundles shared by several commands, and their validators."""

from __future__ import annotations

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON result on stdout.")


def imgsz_option(default: int = 256):
    return click.option(
        "--imgsz", type=click.IntRange(min=32), default=default, show_default=True,
        help="Square input size in pixels (multiple of 32 for YOLO).",
    )


def open_ratio(ctx, param, value):
    """Accept only 0 < value < 1."""
    if value is not None and not 0.0 < value < 1.0:
        raise click.BadParameter(f"must be between 0 and 1 (exclusive), got {value}")
    return value


existing_file = click.Path(exists=True, dir_okay=False)


def _parse_input_shape(ctx, param, value):
    if value is None:
        return None
    from toolchain.loading import parse_input_shape

    try:
        return parse_input_shape(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


input_shape_option = click.option(
    "--input-shape", callback=_parse_input_shape, default=None,
    help="Input shape for plain nn.Module files, e.g. 1,3,224,224.",
)
