"""Entry point of the ``edgeprune`` console script.

Why a custom group: every command must turn user errors (:class:`EdgepruneError`) into one
sentence and exit code 2, with no traceback, and still emit ``{"error": ...}`` under
``--json``. Doing it once here keeps commands free of try/except boilerplate. Command
modules import heavy libraries (torch, ultralytics) inside their functions, so ``--help``
stays fast.
"""

from __future__ import annotations

import os
import sys

import click

from toolchain.cli import (cmd_bench, cmd_cfg, cmd_data, cmd_demo, cmd_deploy, cmd_eval, cmd_prune, cmd_sweep,
                           cmd_train, cmd_vitis)
from toolchain.cli.render import fail
from toolchain.errors import EdgepruneError

# No weights or fonts may be fetched at run time; users can still set YOLO_OFFLINE=0.
os.environ.setdefault("YOLO_OFFLINE", "1")


class EdgepruneGroup(click.Group):
    """Click group that reports :class:`EdgepruneError` as one line and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgepruneError as exc:
            fail(str(exc), as_json="--json" in sys.argv)


@click.group(cls=EdgepruneGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgeprune")
def cli() -> None:
    """Prune detectors so they really get smaller and faster, and deploy them to edge targets."""


cli.add_command(cmd_data.data)
cli.add_command(cmd_train.train)
cli.add_command(cmd_train.finetune)
cli.add_command(cmd_prune.prune)
cli.add_command(cmd_eval.eval_cmd)
cli.add_command(cmd_demo.demo)
cli.add_command(cmd_cfg.cfg2py)
cli.add_command(cmd_cfg.cfg2ir)
cli.add_command(cmd_cfg.cfg_prune)
cli.add_command(cmd_deploy.deploy)
cli.add_command(cmd_bench.bench)
cli.add_command(cmd_sweep.sparsify)
cli.add_command(cmd_sweep.sweep)
cli.add_command(cmd_sweep.report)
cli.add_command(cmd_vitis.preflight)
cli.add_command(cmd_vitis.dpu_rewrite)
cli.add_command(cmd_vitis.board)


def main() -> None:  # console-script entry point
    cli()


if __name__ == "__main__":
    main()
