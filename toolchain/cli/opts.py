"""Option bundles shared by several commands, and their validators."""

from __future__ import annotations

import re

import click


class RegistryChoice(click.Choice):
    """A ``click.Choice`` read from a registry each time it is asked, so a newly registered entry appears.

    ``names`` returns the registered names (e.g. :func:`targets.registry.host_targets`);
    ``extra`` are fixed choices listed first (``auto``).
    """

    def __init__(self, names, extra: tuple[str, ...] = ()):
        self._names, self._extra = names, tuple(extra)
        super().__init__((), case_sensitive=True)

    @property
    def choices(self):
        return (*self._extra, *self._names())

    @choices.setter
    def choices(self, _value):  # click.Choice.__init__ assigns it; the registry is the value
        pass


def _host_targets():
    from targets.registry import host_targets

    return host_targets()


def _deploy_targets():
    from targets.registry import get_target, host_targets

    return [name for name in host_targets() if get_target(name).precisions]  # torch builds nothing to deploy


def _compute_precisions():
    from targets.registry import get_target, host_targets

    seen: dict[str, None] = {}
    for name in host_targets():
        seen.update(dict.fromkeys(get_target(name).compute_precisions))
    return list(seen)


def _methods():
    from toolchain.models.importance import list_importances

    return list_importances()


host_target_choice = RegistryChoice(_host_targets)  # runtimes whose artifacts run here
deploy_target_choice = RegistryChoice(_deploy_targets)  # runtimes that build an artifact that runs here
backend_choice = RegistryChoice(_host_targets, extra=("auto",))
eval_backend_choice = RegistryChoice(_host_targets, extra=("auto", "ultralytics"))
compute_precision_choice = RegistryChoice(_compute_precisions)
method_choice = RegistryChoice(_methods)  # channel-importance criteria, as registered


json_option = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON result on stdout.")
resume_option = click.option(
    "--resume", is_flag=True,
    help="Continue the run a killed process (kill -9, the OOM killer, a power cut) left staged beside --out, from "
         "its last completed epoch to the epochs it was asked for. Without it that staging is removed.")
cache_option = click.option("--cache", is_flag=True,
                            help="Keep decoded training images in RAM (Ultralytics cache=ram): less CPU per epoch.")


class ImageSize(click.ParamType):
    """``--imgsz``: one side (``640``), or height and width (``384x640``, ``384,640``, or ``--imgsz 384 640``).

    Non-square sizes (``rect``) are for models whose input is not square by nature, Darknet cfgs
    (``[net]`` width/height) and plain modules; they arrive as ``(height, width)``, a square as one int.
    """

    name = "size"

    def __init__(self, rect: bool = False):
        self.rect = rect

    def convert(self, value, param, ctx):
        if isinstance(value, (int, tuple)):
            return value
        shape = "640" + (", or H W / HxW such as 384x640" if self.rect else "")
        try:
            sides = [int(part) for part in re.split(r"[x,]", str(value).strip().lower())]
        except ValueError:
            self.fail(f"expected a size in pixels such as {shape}; got {value!r}", param, ctx)
        if len(sides) not in (1, 2) or not all(32 <= side <= 4096 for side in sides):
            self.fail(f"expected {'one or two sides' if self.rect else 'one side'} of 32 to 4096 pixels; got {value!r}",
                      param, ctx)
        if len(sides) == 1 or sides[0] == sides[1]:
            return sides[0]
        if not self.rect:
            self.fail(f"{value} is not square; this command takes one side (non-square sizes: deploy and cfg2ir of "
                      "Darknet cfgs and plain modules)", param, ctx)
        return tuple(sides)


def imgsz_option(rect: bool = False):
    """``--imgsz``; unset means "the size the checkpoint was trained at" (see :func:`resolve_imgsz`)."""
    return click.option(
        "--imgsz", type=ImageSize(rect), default=None,
        help=("Input size in pixels: one side (multiple of 32 for YOLO), or H W (also HxW) for a Darknet cfg or a "
              "plain module. Default: the model's own (a checkpoint's training size, a cfg's [net] width/height)."
              if rect else
              "Square input size in pixels (multiple of 32 for YOLO). "
              "Default: the size the checkpoint was trained at (its train_args; 640 when it does not say)."),
    )


def resolve_imgsz(model_path: str, imgsz: int | None, fallback: int | None = None) -> int | None:
    """The ``--imgsz`` to use for ``model_path``, announced on stderr when it comes from the model file.

    Model sources say their own size (a checkpoint's training size, a Darknet cfg's [net]
    size, see :func:`toolchain.models.sources.default_imgsz`); other inputs (artifacts) and models
    that say nothing (plain modules, non-square cfgs) return ``fallback``, so artifacts keep
    the size they were built at and non-square cfgs keep theirs.
    """
    if imgsz is not None:
        return imgsz
    from toolchain.cli.render import console
    from toolchain.models.sources import default_imgsz

    size, why = default_imgsz(model_path)
    if size is None:
        return fallback
    from rich.markup import escape

    console(stderr=True).print(escape(f"imgsz {size} ({why}; --imgsz overrides)"))
    return size


def head_ratio_option(default: str = "--ratio's"):
    """``--head-ratio``: the task head's own share of a channel prune (see ``PruneConfig.head_ratio``)."""
    return click.option(
        "--head-ratio", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
        help="Fraction of the task head's inner channels (box and class branches) to remove instead of --ratio; "
             f"0 keeps the head whole. Its branches are at Ultralytics' floor widths already. [default: {default}]")


def open_ratio(ctx, param, value):
    """Accept only 0 < value < 1."""
    if value is not None and not 0.0 < value < 1.0:
        raise click.BadParameter(f"must be between 0 and 1 (exclusive), got {value}")
    return value


existing_file = click.Path(exists=True, dir_okay=False)


class OutputPath(click.Path):
    """An output location, checked when the command line is parsed: before any work starts.

    ``kind`` is ``"file"`` or ``"dir"``; see :func:`toolchain.core.fileio.check_output` for what is
    refused (a folder where a file is expected, a parent that is a file, an unwritable place).
    The output is also held for the whole command (:func:`toolchain.core.owners.output_lock`), so a
    second run on it refuses (or, with ``edgeprune --wait``, waits) before doing any work.
    """

    def __init__(self, kind: str):
        super().__init__(dir_okay=kind == "dir", file_okay=kind == "file")
        self.kind = kind

    def convert(self, value, param, ctx):
        from toolchain.core.fileio import check_output

        option = param.opts[0] if param is not None and param.opts and param.opts[0].startswith("-") else "output"
        check_output(value, self.kind, option)  # its InputFileError is the one-line message the CLI prints
        if ctx is not None:
            from toolchain.core.owners import output_lock

            ctx.with_resource(output_lock(value))
        return super().convert(value, param, ctx)


def _parse_input_shape(ctx, param, value):
    if value is None:
        return None
    from toolchain.models.loading import parse_input_shape

    try:
        return parse_input_shape(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


input_shape_option = click.option(
    "--input-shape", callback=_parse_input_shape, default=None,
    help="Input shape for plain nn.Module files, e.g. 1,3,224,224.",
)


weights_option = click.option(
    "--weights", type=click.Path(exists=True, dir_okay=False), default=None,
    help="Darknet .weights for a .cfg MODEL (default: the .weights of the same name beside the cfg).",
)


strict_option = click.option(
    "--strict", is_flag=True,
    help="Refuse a data set in which any image or label file would be skipped (default: warn with counts).")


def refuse_ignored(**unused: str) -> None:
    """Refuse options the user gave on the command line that this run would ignore.

    ``unused`` maps a parameter name to why it would be ignored; only parameters that came from
    the command line (not defaults) are refused, so a silent no-op never looks like success.
    """
    ctx = click.get_current_context()
    for name, why in unused.items():
        if why and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE:
            option = next((p.opts[0] for p in ctx.command.params if p.name == name), name)
            raise click.UsageError(f"{option} is ignored {why}; drop it", ctx=ctx)
