"""Where sweep and autotune run their jobs: in this process, or as Ray tasks on a cluster.

A :class:`Job` is a module-level function, its keyword arguments, the input files it reads (a
model, its .weights, a data set) and the driver folder its outputs belong in. The local
executor calls it with the driver's own paths. The Ray executor ships the inputs as bytes through
the object store (:mod:`toolchain.pipelines.shipping`), runs the function in a scratch folder on whichever
node Ray picks, and brings the output folder back as bytes; the driver alone writes the run
folder, so no worker needs to see the driver's disk. Jobs that measure speed take all the CPUs
of a node (the smallest node's count), so two measurements never share cores; jobs that train
ask for a GPU when the cluster has one.

Results reach ``done(job, result, where)`` in the driver as each job finishes, so callers record them
(JSONL) at once and an interrupted run resumes from what the driver wrote.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from toolchain.core.errors import EdgepruneError
from toolchain.pipelines.shipping import pack_dataset, pack_file, remap_paths, unpack_dataset, unzip_into, zip_folder


class ExecutorError(EdgepruneError):
    """The executor cannot run (Ray missing, cluster unreachable)."""


@dataclass(frozen=True)
class Job:
    """``function(out=<folder>, **kwargs, **files, data=<data.yaml>)`` returning a JSON-like result.

    Args:
        files: keyword -> input file (None allowed) passed to the function as a local path.
        data: a data.yaml whose data set the function reads (passed as ``data``).
        out: the driver folder the job's outputs belong in (emptied first).
        trains: the job trains a network (gets a GPU on a cluster that has one).
    """

    function: Callable
    kwargs: dict
    out: Path
    files: dict = field(default_factory=dict)
    data: str | None = None
    trains: bool = False


Done = Callable[[Job, object, dict | None], None]  # (job, result, where it ran: node and scratch, None locally)
Executor = Callable[[list[Job], Done], None]


def _fresh(folder: Path) -> None:
    if folder.exists():  # leftovers of an interrupted attempt at this job
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def local_executor(jobs: list[Job], done: Done) -> None:
    """Run jobs one after another in this process, on the driver's own files."""
    for job in jobs:
        _fresh(job.out)
        extra = {"data": job.data} if job.data is not None else {}
        done(job, job.function(out=job.out, **job.kwargs, **job.files, **extra), None)


def _run_shipped(function, kwargs: dict, names: list[str], data_blob, *blobs):
    """Ray task body: unpack the inputs into a scratch folder, run, return (result, output zip, where it ran)."""
    import ray

    scratch = Path(tempfile.mkdtemp(prefix="edgeprune-job-"))
    try:
        inputs = {}
        for name, blob in zip(names, blobs, strict=True):
            if blob is None:
                inputs[name] = None
                continue
            unzip_into(blob, scratch / "in" / name)
            inputs[name] = str(next((scratch / "in" / name).iterdir()))
        if data_blob is not None:
            inputs["data"] = str(unpack_dataset(data_blob, scratch / "data"))
        out = scratch / "out"
        out.mkdir()
        result = function(out=out, **kwargs, **inputs)
        where = {"node": ray.get_runtime_context().get_node_id(), "scratch": str(scratch)}
        return result, zip_folder(out), str(out), where
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def ray_executor(address: str | None = None, num_cpus: int | None = None) -> Executor:
    """Jobs as Ray tasks on the cluster at ``address`` (default: a Ray started in this process).

    Raises:
        ExecutorError: Ray is not installed, or the cluster cannot be reached.
    """
    try:
        import ray
    except ImportError:
        raise ExecutorError("--executor ray needs Ray: pip install 'edgeprune[ray]' (or pip install ray)") from None

    def execute(jobs: list[Job], done: Done) -> None:
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:
                    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
            except ConnectionError as exc:
                raise ExecutorError(f"cannot reach the Ray cluster at {address}: {exc}") from None
        node_cpus = min(n["Resources"].get("CPU", 1) for n in ray.nodes() if n["Alive"])
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        shipped: dict[str, object] = {}

        def put(key: str, make) -> object:
            if key not in shipped:  # each file or data set goes into the object store once
                shipped[key] = ray.put(make())
            return shipped[key]

        pending = {}
        for job in jobs:
            names = list(job.files)
            blobs = [None if path is None else put(f"file:{path}", lambda p=path: pack_file(p))
                     for path in job.files.values()]
            data = put(f"data:{job.data}", lambda d=job.data: pack_dataset(d)) if job.data else None
            task = ray.remote(num_cpus=node_cpus, num_gpus=1 if (job.trains and gpus) else 0)(_run_shipped)
            pending[task.remote(job.function, job.kwargs, names, data, *blobs)] = job
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(finished[0])
            result, blob, worker_out, where = ray.get(finished[0])
            _fresh(job.out)
            unzip_into(blob, job.out)
            done(job, remap_paths(result, worker_out, str(job.out)), where)

    return execute
