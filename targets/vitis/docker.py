"""Run the quantize and compile steps in the Vitis AI Docker image, and say clearly when that cannot work.

The command mirrors the official ``docker_run.sh`` of Xilinx/Vitis-AI: the workspace mounted
at ``/workspace`` and used as the working directory, ``USER``/``UID``/``GID`` passed so the
image's entrypoint writes files owned by the calling user, ``--rm``. Inside, a non-interactive
shell does not read the ``.bashrc`` that sets up conda, so the command sources conda's
profile script before ``conda activate vitis-ai-pytorch``::
    docker run --rm -e USER=me -e UID=1000 -e GID=1000 -v WS:/workspace -w /workspace IMAGE \\
        bash -c "source /opt/vitis_ai/conda/etc/profile.d/conda.sh && conda activate vitis-ai-pytorch && ..."
"""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from toolchain.core.errors import EdgepruneError
from toolchain.core.cache import cache_dir

DEFAULT_IMAGE = "xilinx/vitis-ai-pytorch-cpu:latest"
CONDA_PROFILE = "/opt/vitis_ai/conda/etc/profile.d/conda.sh"
CONDA_ENV = "vitis-ai-pytorch"
CONTAINER_WORKSPACE = "/workspace"
INSTALL_HINT = ("install Docker Engine (https://docs.docker.com/engine/install/) or use --dry-run to only write the "
                "workspace")


class DockerError(EdgepruneError):
    """Docker is missing, its daemon is down, the image is absent, or a step failed in the container."""


@dataclass(frozen=True)
class DockerStep:
    """One ``docker run`` of the deploy: its name, the script run in the container, the full argv."""

    name: str
    script: str
    argv: tuple[str, ...]

    @property
    def shell(self) -> str:
        return shlex.join(self.argv)


def docker_argv(image: str, workspace: Path, script: str, docker: str = "docker") -> tuple[str, ...]:
    """The argv running ``script`` (a shell command line) in ``image`` with ``workspace`` mounted."""
    user = getpass.getuser()
    inner = f"source {CONDA_PROFILE} && conda activate {CONDA_ENV} && {script}"
    return (docker, "run", "--rm", "-e", f"USER={user}", "-e", f"UID={os.getuid()}", "-e", f"GID={os.getgid()}",
            "-v", f"{Path(workspace).resolve()}:{CONTAINER_WORKSPACE}", "-w", CONTAINER_WORKSPACE, image,
            "bash", "-c", inner)


def deploy_steps(image: str, workspace: Path, fast_finetune: bool) -> tuple[DockerStep, DockerStep]:
    """The quantize step (calib, then test + export) and the compile step."""
    ft = " --fast-finetune" if fast_finetune else ""
    quantize = f"python quantize.py --quant-mode calib{ft} && python quantize.py --quant-mode test --deploy{ft}"
    compile_ = "bash compile.sh"
    return (DockerStep("quantize", quantize, docker_argv(image, workspace, quantize)),
            DockerStep("compile", compile_, docker_argv(image, workspace, compile_)))


def check_docker(image: str) -> str:
    """Path of the docker client; raises a one-sentence :class:`DockerError` unless ``image`` can be run."""
    docker = shutil.which("docker")
    if docker is None:
        raise DockerError(f"the `docker` command was not found on PATH; {INSTALL_HINT}")
    proc = subprocess.run([docker, "image", "inspect", image], capture_output=True, text=True)
    if proc.returncode != 0:
        said = (proc.stderr.strip().splitlines() or [""])[-1]
        if "daemon" in said.lower() or "cannot connect" in said.lower():
            raise DockerError(f"the Docker daemon is not reachable (`docker image inspect` said: {said}); start it "
                              "or use --dry-run")
        raise DockerError(f"the Docker image {image} is not present locally; pull it with `docker pull {image}` "
                          "(or build docker/vitis-ai/Dockerfile)")
    return docker


def keep_log(log: Path, what: str) -> Path:
    """Copy a failed step's log to edgeprune's cache: the staged deploy folder holding it is removed on failure."""
    import time

    kept = cache_dir("vitis-logs") / f"{what}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    shutil.copyfile(log, kept)
    return kept


def run_step(step: DockerStep, log: Path) -> None:
    """Run one step, its output going to ``log``; raises naming the log when the container fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        proc = subprocess.run(list(step.argv), stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = (log.read_text().strip().splitlines() or ["(no output)"])[-1][:200]
        kept = keep_log(log, step.name)
        raise DockerError(f"the {step.name} step failed in the container (exit {proc.returncode}): {tail} "
                          f"-- full log: {kept}")
