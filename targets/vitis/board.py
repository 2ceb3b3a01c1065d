"""``edgeprune board bench``: copy the board bundle to a KV260 over SSH, run it there, bring the result back.

Why through ``ssh``/``scp`` subprocesses: they use the user's own keys, agents and
``~/.ssh/config`` host aliases, which a Python SSH library would have to re-implement. The
result is ``run_kv260.py``'s JSON, in the format of ``edgeprune bench``, measured on the board;
nothing here estimates a speed.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from targets.bench import BenchResult
from targets.vitis.bundle import BOARD_SCRIPT
from toolchain.core.errors import EdgepruneError, InputFileError

MODES = ("inference", "e2e", "streams")
_SUBCOMMAND = {"inference": "bench", "e2e": "e2e", "streams": "streams"}


class BoardError(EdgepruneError):
    """The SSH tools are missing, the board is unreachable, or the script failed there."""


@dataclass(frozen=True)
class BoardBenchConfig:
    """What to run on the board.

    Args:
        host: ``user@ip`` or an ``~/.ssh/config`` alias.
        bundle: the ``board/`` folder written by ``deploy vitis``.
        remote_dir: where the bundle goes on the board (relative paths are under the login's home).
        mode: ``inference`` (inference only), ``e2e`` (pre/post-processing included) or ``streams``.
        sources: e2e: one source on the board (image, folder, video or ``synthetic``); streams: four.
    """

    host: str
    bundle: Path = Path("board")
    remote_dir: str = "edgeprune_kv260"
    mode: str = "inference"
    threads: int = 1
    iterations: int | None = None
    duration: float = 10.0
    warmup: int = 5
    sources: tuple[str, ...] = ()
    port: int | None = None
    python: str = "python3"

    def validate(self) -> None:
        if self.mode not in MODES:
            raise EdgepruneError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        wanted = {"inference": (0,), "e2e": (0, 1), "streams": (4,)}[self.mode]
        if len(self.sources) not in wanted:
            raise EdgepruneError(f"--mode {self.mode} takes {' or '.join(map(str, wanted))} --source values (paths on "
                                 f"the board), got {len(self.sources)}")
        if self.threads < 1 or self.warmup < 0 or (self.iterations is not None and self.iterations < 1):
            raise EdgepruneError("--threads and --iterations must be at least 1 and --warmup at least 0")


def bundle_files(bundle: Path) -> list[Path]:
    """The three files of a board bundle; raises naming what is missing."""
    bundle = Path(bundle)
    meta = bundle / "metadata.yaml"
    if not (bundle / BOARD_SCRIPT).is_file() or not meta.is_file():
        raise InputFileError(f"{bundle} is not a board bundle (expected {BOARD_SCRIPT} and metadata.yaml from "
                             "`edgeprune deploy vitis`)")
    xmodel = bundle / json.loads(meta.read_text())["edgeprune"]["vitis"]["xmodel"]
    if not xmodel.is_file():
        raise InputFileError(f"{bundle} lacks the xmodel {xmodel.name} named in its metadata.yaml")
    return [bundle / BOARD_SCRIPT, meta, xmodel]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BoardError(f"the `{name}` command was not found on PATH; install an OpenSSH client")
    return path


def remote_command(cfg: BoardBenchConfig) -> str:
    """The shell command run on the board."""
    args = [cfg.python, BOARD_SCRIPT, "--json", "--threads", str(cfg.threads), "--warmup", str(cfg.warmup)]
    args += ["--iterations", str(cfg.iterations)] if cfg.iterations else ["--duration", str(cfg.duration)]
    args += [_SUBCOMMAND[cfg.mode], *cfg.sources]
    return f"cd {shlex.quote(cfg.remote_dir)} && {shlex.join(args)}"


def board_commands(cfg: BoardBenchConfig) -> list[list[str]]:
    """ssh mkdir, scp the bundle, ssh run: the argv of each, in order."""
    ssh, scp = _tool("ssh"), _tool("scp")
    ssh_port = ["-p", str(cfg.port)] if cfg.port else []
    scp_port = ["-P", str(cfg.port)] if cfg.port else []
    files = [str(f) for f in bundle_files(cfg.bundle)]
    return [
        [ssh, *ssh_port, cfg.host, f"mkdir -p {shlex.quote(cfg.remote_dir)}"],
        [scp, "-q", *scp_port, *files, f"{cfg.host}:{cfg.remote_dir}/"],
        [ssh, *ssh_port, cfg.host, remote_command(cfg)],
    ]


def _run(argv: list[str], what: str, timeout: float) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BoardError(f"{what} did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        said = (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
        raise BoardError(f"{what} failed (exit {proc.returncode}): {said}")
    return proc.stdout


def board_bench(cfg: BoardBenchConfig) -> dict:
    """Copy, run and return the board's result (``edgeprune bench``'s JSON fields)."""
    cfg.validate()
    mkdir, copy, run = board_commands(cfg)
    _run(mkdir, f"creating {cfg.remote_dir} on {cfg.host}", 60)
    _run(copy, f"copying the bundle to {cfg.host}", 600)
    out = _run(run, f"{BOARD_SCRIPT} on {cfg.host}", 600 + 3 * (0 if cfg.iterations else cfg.duration))
    lines = [line for line in out.splitlines() if line.strip().startswith("{")]
    if not lines:
        raise BoardError(f"{BOARD_SCRIPT} on {cfg.host} printed no JSON result")
    result = json.loads(lines[-1])
    expected = {f.name for f in dataclasses.fields(BenchResult)}
    if set(result) != expected:
        raise BoardError(f"{BOARD_SCRIPT} on {cfg.host} returned fields {sorted(set(result) ^ expected)} that differ "
                         "from edgeprune bench's; copy a bundle from this edgeprune version")
    return result
