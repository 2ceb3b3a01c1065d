"""``edgeprune cfg2py``, ``cfg2ir`` and ``cfg-prune``: Darknet cfg + .weights to PyTorch, OpenVINO, pruned Darknet.

Each command parses its options, makes one library call in :mod:`cfg_codegen` and renders the
result; torch/openvino are imported inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import click

from toolchain.cli.opts import existing_file, json_option
from toolchain.cli.render import console, human_bytes, print_json, stdout_to_stderr, table


def _notes(notes) -> None:
    from rich.markup import escape

    for note in notes:  # on stderr, so --json output stays parseable; notes quote "[section]" names
        console(stderr=True).print(f"[yellow]note:[/yellow] {escape(note)}")


def _ratio(ctx, param, value):
    if value is not None and not 0.0 <= value < 1.0:
        raise click.BadParameter(f"must be in [0, 1), got {value}")
    return value


bn_eps_option = click.option(
    "--bn-eps", type=click.FloatRange(min=0.0, min_open=True), default=1e-5, show_default=True,
    help="BatchNorm epsilon: Darknet folds BN with 1e-5; 1e-6 reproduces OpenCV's Darknet importer.")


@click.command("cfg2py")
@click.argument("cfg", type=existing_file)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The model.py to write.")
@click.option("--weights", type=existing_file, default=None,
              help="Darknet .weights: also save them as a state dict next to --out (same name, .pt).")
@bn_eps_option
@json_option
def cfg2py(cfg, out, weights, bn_eps, as_json) -> None:
    """Write a standalone PyTorch module (imports only torch) for the Darknet CFG.

    One line per layer, commented with the cfg index and section; forward() returns the maps
    feeding the [yolo] layers and decode() turns them into OpenCV-style rows.
    """
    from cfg_codegen.codegen import write_model_py

    with stdout_to_stderr(as_json):
        result = write_model_py(cfg, out, weights, bn_eps)
    _notes(result.warnings)
    if as_json:
        print_json(result)
        return
    rows = [["layers", result.layers], ["yolo layers", ", ".join(map(str, result.heads))],
            ["input (WxH)", "x".join(map(str, result.input_size))], ["parameters", result.params],
            ["state dict", result.state_dict or "-"]]
    console().print(table("cfg2py", ["", "value"], rows, caption=f"wrote {result.source}"))


@click.command("cfg2ir")
@click.argument("cfg", type=existing_file)
@click.argument("weights", type=existing_file, required=False)
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Directory for model.xml/.bin and metadata.yaml.")
@click.option("--imgsz", nargs=2, type=click.IntRange(min=1), default=None, metavar="W H",
              help="Input width and height (default: the cfg's [net] size).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True)
@click.option("--data", type=existing_file, default=None,
              help="YOLO data.yaml: calibration images for int8, class names for metadata.yaml.")
@click.option("--calib-images", type=click.IntRange(min=1), default=300, show_default=True,
              help="At most this many images for int8 calibration.")
@click.option("--decode", is_flag=True,
              help="Output OpenCV DNN yolo rows [cx, cy, w, h, obj, scores...] instead of head maps.")
@bn_eps_option
@json_option
def cfg2ir(cfg, weights, out, imgsz, precision, data, calib_images, decode, bn_eps, as_json) -> None:
    """Convert the Darknet CFG (and WEIGHTS; random if omitted) to an OpenVINO IR in --out."""
    if precision == "int8" and data is None:
        raise click.BadParameter("int8 calibrates on real images: pass a YOLO data.yaml with --data",
                                 param_hint="'--precision'")
    from cfg_codegen.ir import IrConfig, convert_to_ir

    width, height = imgsz if imgsz else (None, None)
    config = IrConfig(width=width, height=height, precision=precision, data=data, decode=decode,
                      calibration_images=calib_images, bn_eps=bn_eps)
    with stdout_to_stderr(as_json), console(stderr=True).status("converting"):
        result = convert_to_ir(cfg, weights, out, config)
    _notes(result.notes)
    if as_json:
        print_json(result)
        return
    import os

    rows = [[h.output, f"layer {h.layer}", f"{h.grid[0]}x{h.grid[1]}", f"{h.stride[0]:g}x{h.stride[1]:g}"]
            for h in result.heads]
    caption = (f"{result.precision}, input {result.imgsz[0]}x{result.imgsz[1]} (WxH), "
               f"{'decoded rows' if result.decode else 'raw head maps'}, "
               f"weights {human_bytes(os.path.getsize(result.bin))}\nwrote {result.xml} and {result.metadata}")
    console().print(table("cfg2ir outputs", ["output", "yolo", "grid (WxH)", "stride"], rows, caption=caption))


@click.command("cfg-prune")
@click.argument("cfg", type=existing_file)
@click.argument("weights", type=existing_file)
@click.option("--global-percent", type=float, default=None, callback=_ratio,
              help="Remove this fraction of the prunable channels with the smallest |BN gamma|, network-wide.")
@click.option("--keep", type=float, default=0.01, show_default=True, callback=_ratio,
              help="Every pruned conv keeps at least this fraction of its channels (and at least one).")
@click.option("--shortcuts", type=click.IntRange(min=0), default=0, show_default=True,
              help="Remove this many residual units (conv, conv, shortcut) with the smallest gamma.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Directory for pruned.cfg and pruned.weights.")
@json_option
def cfg_prune(cfg, weights, global_percent, keep, shortcuts, out, as_json) -> None:
    """Prune a Darknet CFG + WEIGHTS pair and write pruned.cfg + pruned.weights (Darknet and OpenCV load them)."""
    if global_percent is None and shortcuts == 0:
        raise click.UsageError("nothing to prune: give --global-percent and/or --shortcuts")
    from cfg_codegen.prune import PruneConfig, prune_darknet

    with stdout_to_stderr(as_json), console(stderr=True).status("pruning"):
        report = prune_darknet(cfg, weights, out, PruneConfig(global_percent, keep, shortcuts))
    _notes(report.notes)
    if as_json:
        print_json(report)
        return
    rows = [["conv channels", report.channels_before, report.channels_after,
             f"{report.channels_after / report.channels_before:.3f}"],
            ["parameters", report.params_before, report.params_after,
             f"{report.params_after / report.params_before:.3f}"],
            ["layers removed", None, len(report.removed_layers), None]]
    console().print(table("cfg-prune", ["", "before", "after", "after/before"], rows,
                          caption=f"wrote {report.cfg} and {report.weights}"))
