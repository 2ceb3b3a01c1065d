"""Entry point of the ``edgeprune`` console script.

Why a custom group: every command must turn user errors (:class:`EdgepruneError`) into one
sentence and exit code 2, with no traceback, and still emit ``{"error": ...}`` under
``--json``. Doing it once here keeps commands free of try/except boilerplate. Command
modules import heavy libraries (torch, ultralytics) inside their functions, so ``--help``
stays fast.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import sys

import click

from toolchain.cli import (
    cmd_autotune,
    cmd_bench,
    cmd_cfg,
    cmd_data,
    cmd_demo,
    cmd_deploy,
    cmd_eval,
    cmd_optimize,
    cmd_prune,
    cmd_stream,
    cmd_sweep,
    cmd_train,
    cmd_vitis,
)
from toolchain.cli.render import fail
from toolchain.core.errors import EdgepruneError
from toolchain.core.owners import release_all_outputs, set_waiting_for_outputs

# No weights or fonts may be fetched at run time; users can still set YOLO_OFFLINE=0.
os.environ.setdefault("YOLO_OFFLINE", "1")


def _end_as_interrupted() -> None:
    """End the process by SIGINT now that the interrupted command has cleaned up.

    A program that catches Ctrl-C to clean up should then die by SIGINT, so that a calling shell
    or ``make`` stops too (a shell reports 130). By the time this runs, the KeyboardInterrupt has
    passed through every ``finally`` of the command (staged outputs are removed) and the line is
    printed. Python's own shutdown is not waited for: it joins every non-daemon thread, and a
    library's worker thread still computing kept an interrupted ``prune`` alive for minutes after
    its "interrupted" line (seen in CI); ``sys.exit(130)`` had the same wait, and once even ended
    by SIGINT anyway.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    release_all_outputs()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


# Failures of the machine, not of edgeprune, that a writer did not already turn into an OutputError.
_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO)


def _joined_sizes(argv: list[str]) -> list[str]:
    """``--imgsz H W`` as ``--imgsz HxW``: Click options take a fixed number of values, sizes one or two."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--imgsz" and i + 2 < len(argv) and argv[i + 1].isdigit() and argv[i + 2].isdigit():
            out += ["--imgsz", f"{argv[i + 1]}x{argv[i + 2]}"]
            i += 3
            continue
        out.append(argv[i])
        i += 1
    return out


class _NoteHandler(logging.Handler):
    """Library notes (:func:`toolchain.core.progress.note`) as one line each on the stderr of the moment.

    Looked up at each call, not bound once: the progress display swaps ``sys.stderr`` while it runs.
    """

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"note: {record.getMessage()}", err=True)


_notes = logging.getLogger("edgeprune")
_notes.addHandler(_NoteHandler())
_notes.propagate = False


class EdgepruneGroup(click.Group):
    """Click group that reports every user error as one line on stderr and exit code 2.

    :class:`EdgepruneError` comes from edgeprune's checks; Click's own usage errors (a missing
    file, a value out of range) are reworded to the same one line instead of Click's three
    (usage, hint, error). Ctrl-C prints one line and ends the process by SIGINT, which a shell
    reports as 130; staged outputs clean up after themselves (see
    :func:`toolchain.core.fileio.staged_folder`).
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = _joined_sizes(list(sys.argv[1:] if args is None else args))
        as_json = "--json" in argv
        try:
            code = super().main(args=argv, prog_name="edgeprune", complete_var=complete_var,
                                standalone_mode=False, **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "edgeprune"
            fail(f"{where}: {exc.format_message()} (see `{where} --help`)", as_json=as_json)
        except click.ClickException as exc:
            fail(exc.format_message(), as_json=as_json)
        except EdgepruneError as exc:
            fail(str(exc), as_json=as_json)
        except OSError as exc:
            if exc.errno not in _DISK_ERRORS:
                raise
            fail(f"cannot write {exc.filename or 'an output'}: {exc.strerror}", as_json=as_json)
        except (click.Abort, KeyboardInterrupt):
            click.echo("\nedgeprune: interrupted; nothing was written", err=True)
            _end_as_interrupted()
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=EdgepruneGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgeprune")
@click.option("--wait", is_flag=True, envvar="EDGEPRUNE_WAIT",
              help="When another run is writing the same output, wait for it instead of refusing (also $EDGEPRUNE_WAIT).")
@click.option("--repo", type=click.Path(exists=True, file_okay=False), envvar="EDGEPRUNE_REPO", default=None,
              help="A YOLOv5/YOLOv7 repository (the folder holding models/yolo.py), for checkpoints their train.py "
                   "saved (also $EDGEPRUNE_REPO).")
def cli(wait, repo) -> None:
    """Prune detectors so they really get smaller and faster, and deploy them to edge targets."""
    set_waiting_for_outputs(wait)
    if repo:
        import edgeprune

        edgeprune.use_repository(repo)


cli.add_command(cmd_data.data)
cli.add_command(cmd_train.train)
cli.add_command(cmd_train.finetune)
cli.add_command(cmd_prune.prune)
cli.add_command(cmd_eval.eval_cmd)
cli.add_command(cmd_stream.stream)
cli.add_command(cmd_demo.demo)
cli.add_command(cmd_optimize.optimize)
cli.add_command(cmd_cfg.cfg2py)
cli.add_command(cmd_cfg.cfg2ir)
cli.add_command(cmd_cfg.cfg_prune)
cli.add_command(cmd_deploy.deploy)
cli.add_command(cmd_bench.bench)
cli.add_command(cmd_sweep.sparsify)
cli.add_command(cmd_sweep.sweep)
cli.add_command(cmd_sweep.report)
cli.add_command(cmd_autotune.autotune)
cli.add_command(cmd_vitis.preflight)
cli.add_command(cmd_vitis.dpu_rewrite)
cli.add_command(cmd_vitis.board)


def main() -> None:  # console-script entry point
    cli()


if __name__ == "__main__":
    main()
