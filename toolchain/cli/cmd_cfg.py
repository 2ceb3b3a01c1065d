"""``edgeprune cfg2py``, ``cfg2ir`` and ``cfg-prune``: Darknet cfg + .weights to PyTorch, OpenVINO, pruned Darknet.

Each command parses its options, makes one library call and renders the result; ``cfg2ir`` is
``deploy openvino`` on a cfg (the one deploy pipeline). torch/openvino are imported inside the
commands so ``--help`` stays fast.
"""

from __future__ import annotations

import click

from toolchain.cli.opts import OutputPath, existing_file, json_option
from toolchain.cli.render import console, print_json, progress, stdout_to_stderr, table


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
@click.option("--out", required=True, type=OutputPath("file"), help="The model.py to write.")
@click.option("--weights", type=existing_file, default=None,
              help="Darknet .weights: also save them as a state dict next to --out (same name, .pt).")
@bn_eps_option
@json_option
def cfg2py(cfg, out, weights, bn_eps, as_json) -> None:
    """Write a standalone PyTorch module (imports only torch) for the Darknet CFG.

    One line per layer, commented with the cfg index and section; forward() returns the maps
    feeding the [yolo] layers and decode() turns them into OpenCV-style rows.
    """
    import edgeprune

    with stdout_to_stderr(as_json):
        result = edgeprune.cfg2py(cfg, out, weights=weights, bn_eps=bn_eps)
    _notes(result.warnings)
    if as_json:
        print_json(result)
        return
    rows = [["layers", result.layers], ["yolo layers", ", ".join(map(str, result.heads))],
            ["input (WxH)", "x".join(map(str, result.input_size))], ["parameters", result.params],
            ["state dict", result.state_dict or "-"]]
    console().print(table("cfg2py", ["", "value"], rows, caption=f"wrote {result.source}"))


class _Cfg2Ir(click.Command):
    """``cfg2ir CFG [WEIGHTS]``: ``deploy openvino`` on a Darknet cfg, with the same options and outputs.

    Its options are ``deploy openvino``'s, read from the target registry when first needed (so
    ``edgeprune --help`` stays fast and the two can never drift apart); WEIGHTS may also be given
    positionally, as earlier versions took it.
    """

    def __init__(self):
        super().__init__("cfg2ir", callback=self._run, short_help="Darknet cfg + weights to OpenVINO IR "
                                                                  "(= deploy openvino CFG --weights W).",
                         help="Convert the Darknet CFG (and WEIGHTS) to an OpenVINO IR: an alias of "
                              "`edgeprune deploy openvino CFG --weights WEIGHTS`, with the same options and the same "
                              "outputs (the IR folder, metadata.yaml with the heads' anchors, deploy.json with the "
                              "fidelity check). Without weights the IR has random parameters (a note says so).")
        self._params = None

    @property
    def params(self):
        if self._params is None:
            from targets.registry import get_target
            from toolchain.cli.cmd_deploy import pipeline_command

            params = list(pipeline_command(get_target("openvino")).params)
            params.insert(1, click.Argument(["weights_file"], required=False, type=existing_file))
            self._params = params
        return self._params

    @params.setter
    def params(self, value):  # click.Command.__init__ assigns it; the registry is the value
        pass

    @staticmethod
    def _run(model, weights_file, weights, **kwargs):
        from pathlib import Path

        from toolchain.cli.cmd_deploy import run_deploy

        if Path(model).suffix.lower() != ".cfg":
            raise click.BadParameter(f"cfg2ir converts Darknet .cfg files, got {model}; use `edgeprune deploy "
                                     "openvino` for other models", param_hint="'CFG'")
        if weights_file and weights and Path(weights_file).resolve() != Path(weights).resolve():
            raise click.BadParameter(f"WEIGHTS {weights_file} and --weights {weights} differ; give one",
                                     param_hint="'--weights'")
        run_deploy("openvino", model=model, weights=weights or weights_file, **kwargs)


cfg2ir = _Cfg2Ir()


@click.command("cfg-prune")
@click.argument("cfg", type=existing_file)
@click.argument("weights", type=existing_file)
@click.option("--global-percent", type=float, default=None, callback=_ratio,
              help="Remove this fraction of the prunable channels with the smallest |BN gamma|, network-wide.")
@click.option("--keep", type=float, default=0.01, show_default=True, callback=_ratio,
              help="Every pruned conv keeps at least this fraction of its channels (and at least one).")
@click.option("--shortcuts", type=click.IntRange(min=0), default=0, show_default=True,
              help="Remove this many residual units (conv, conv, shortcut) with the smallest gamma.")
@click.option("--out", required=True, type=OutputPath("dir"),
              help="Directory for pruned.cfg and pruned.weights.")
@json_option
def cfg_prune(cfg, weights, global_percent, keep, shortcuts, out, as_json) -> None:
    """Prune a Darknet CFG + WEIGHTS pair and write pruned.cfg + pruned.weights (Darknet and OpenCV load them)."""
    import edgeprune

    with stdout_to_stderr(as_json), progress("pruning"):
        report = edgeprune.cfg_prune(cfg, weights, out, global_percent=global_percent, keep=keep, shortcuts=shortcuts)
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
