"""The recovery matrix of benchmarks/recovery.md, run as one timed batch of edgeprune commands (on a GPU when present).

Usage:
    python benchmarks/recovery_gpu.py --out DIR [--work W] [--scale full|quick] [--slots 6] [--deadline 540]
        [--device auto]

What it runs, each job an ordinary ``edgeprune ... --json`` command whose JSON lands in
``W/results/<job>.json`` (stderr in ``W/logs/<job>.log``), up to ``--slots`` at once, in the
priority order below as their inputs appear:

* ``gpu-bench`` (CUDA only): Ultralytics-style checkpoints run by the torch runner on the GPU
  (``bench --backend torch --device cuda``): the 640 baseline and its 0.7 prune with channel
  multiples 8/16/32/64, at batch 1 and 32, FP32 and FP16 (batch 1 FP16 also eager, without a
  CUDA graph) - which channel multiple the GPU wants, measured.
* converged baselines: yolov8n at 256, 416 and 640 and yolo11n at 416, from scratch on the
  synthetic sets, ``train --converge 20`` (stop once mAP50-95 gained < 0.3 points in 20 epochs;
  the cap is the epochs given).
* the recipe (``sparsify`` the prune's channels to zero → ``prune --method bn`` → ``finetune``
  distilled from the unpruned baseline) on each, and the same pruned architecture trained from
  scratch for the same total epochs (``train --from-scratch``);
* at 640 the controls: the old recipe (``--method bn`` on the dense baseline), one-shot and
  iterative L1 without sparsity training, labels only, the sparsified model as teacher, ratios
  0.5 / 0.6, global ranking.

Runs, results, logs and ``summary.json`` go to ``--work``; jobs still running at ``--deadline``
seconds are stopped and said so in the summary. ``DIR`` gets only what a machine that hands back
a few files can return: ``results.tar.gz`` (results, logs, summary, per-epoch CSVs, sparsity
records) and the weights that matter in ``models-N.tar`` of at most 15 MiB each. ``--scale quick`` runs the same graph with 1-2 epochs
at small sizes, to check the plumbing on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_PACK = 15 * 2**20  # bytes per returned tar


@dataclass
class Job:
    name: str
    argv: list[str]
    needs: list[str] = field(default_factory=list)
    produces: Path | None = None  # a file the job must leave (else it failed)


def edgeprune(*args) -> list[str]:
    return [sys.executable, "-m", "toolchain.cli.main", *map(str, args), "--json"]


def plan(work: Path, scale: str, device: str, cuda: bool) -> list[Job]:
    quick = scale == "quick"
    sizes = {"256": 64 if quick else 256, "416": 96 if quick else 416, "640": 128 if quick else 640}
    caps = {"256": 2, "416": 2, "640": 2} if quick else {"256": 150, "416": 100, "640": 80}
    budget = {"256": 2, "416": 2, "640": 2} if quick else {"256": 40, "416": 50, "640": 30}
    common = ["--device", device, "--workers", "0" if quick else "2", "--cache"]
    jobs: list[Job] = []
    data = {}
    for key, px in sizes.items():
        folder = work / f"data-{key}"
        data[key] = folder / "data.yaml"
        extra = ["--train", "16", "--val", "8"] if quick else []
        jobs.append(Job(f"data-{key}", edgeprune("data", "synth", folder, "--imgsz", px, *extra), produces=data[key]))

    def base_pt(name):
        return work / name / "weights" / "best.pt"

    bases = {"v8n-256": ("256", "yolov8n.yaml"), "v8n-416": ("416", "yolov8n.yaml"),
             "y11n-416": ("416", "yolo11n.yaml"), "v8n-640": ("640", "yolov8n.yaml")}
    for name, (key, yaml) in bases.items():
        jobs.append(Job(f"base-{name}", edgeprune("train", data[key], "--model", yaml, "--epochs", caps[key],
                                                  "--converge", 2 if quick else 20, "--imgsz", sizes[key],
                                                  "--out", work / f"base-{name}", *common),
                        needs=[f"data-{key}"], produces=base_pt(f"base-{name}")))

    def recipe(tag, base, key, ratio=0.7, method="bn", glob=False, teacher="base", share=0.4, sparsify=True,
               steps=1, scratch=False):
        """sparsify -> prune -> finetune (-> from-scratch control) jobs for one row."""
        total = budget[key]
        first = max(1, round(share * total)) if sparsify else 0
        src = base_pt(f"base-{base}")
        flags = ["--ratio", ratio, "--method", method] + (["--global"] if glob else [])
        needs = [f"base-{base}"]
        if sparsify:
            sparse = work / f"sparse-{tag}"
            jobs.append(Job(f"sparse-{tag}", edgeprune("sparsify", src, "--data", data[key], *flags, "--epochs", first,
                                                        "--imgsz", sizes[key], "--out", sparse, *common),
                            needs=needs, produces=sparse / "weights" / "last.pt"))
            src, needs = sparse / "weights" / "last.pt", [f"sparse-{tag}"]
        pruned = work / f"pruned-{tag}.pt"
        jobs.append(Job(f"prune-{tag}", edgeprune("prune", src, *flags, "--steps", steps, "--imgsz", sizes[key],
                                                   "--data", data[key], "--latency-iters", 0, "--out", pruned),
                        needs=needs, produces=pruned))
        teacher_args = {"base": ["--distill", base_pt(f"base-{base}")], "none": ["--no-distill"],
                        "sparse": ["--distill", work / f"sparse-{tag}" / "weights" / "last.pt"]}[teacher]
        jobs.append(Job(f"ft-{tag}", edgeprune("finetune", pruned, "--data", data[key], "--epochs", total - first,
                                                "--imgsz", sizes[key], *teacher_args, "--out", work / f"ft-{tag}",
                                                *common),
                        needs=[f"prune-{tag}"], produces=work / f"ft-{tag}" / "weights" / "best.pt"))
        if scratch:
            jobs.append(Job(f"scratch-{tag}", edgeprune("train", data[key], "--model", pruned, "--from-scratch",
                                                         "--epochs", total, "--imgsz", sizes[key],
                                                         "--out", work / f"scratch-{tag}", *common),
                            needs=[f"prune-{tag}"], produces=work / f"scratch-{tag}" / "weights" / "best.pt"))

    def shared_finetune(tag, of, key, base, teacher):
        """A fine-tune of another row's pruned model with another teacher (labels only, the sparsified model)."""
        total = budget[key]
        first = max(1, round(0.4 * total))
        teacher_args = {"none": ["--no-distill"],
                        "sparse": ["--distill", work / f"sparse-{of}" / "weights" / "last.pt"]}[teacher]
        jobs.append(Job(f"ft-{tag}", edgeprune("finetune", work / f"pruned-{of}.pt", "--data", data[key],
                                                "--epochs", total - first, "--imgsz", sizes[key], *teacher_args,
                                                "--out", work / f"ft-{tag}", *common),
                        needs=[f"prune-{of}"], produces=work / f"ft-{tag}" / "weights" / "best.pt"))

    # in priority order
    recipe("v8n-416-r0.7", "v8n-416", "416", scratch=True)
    recipe("y11n-416-r0.7", "y11n-416", "416", scratch=True)
    recipe("v8n-640-r0.7", "v8n-640", "640", scratch=True)
    recipe("v8n-640-old-bn", "v8n-640", "640", sparsify=False)  # what failed: bn ranking on dense gammas
    recipe("v8n-640-l1", "v8n-640", "640", method="l1", sparsify=False)  # one-shot L1, no sparsity training
    shared_finetune("v8n-640-r0.7-labels", "v8n-640-r0.7", "640", "v8n-640", "none")
    shared_finetune("v8n-640-r0.7-tsparse", "v8n-640-r0.7", "640", "v8n-640", "sparse")
    recipe("v8n-640-r0.5", "v8n-640", "640", ratio=0.5)
    recipe("v8n-640-r0.6", "v8n-640", "640", ratio=0.6)
    recipe("v8n-640-g0.7", "v8n-640", "640", glob=True)
    recipe("v8n-640-l1-iter", "v8n-640", "640", method="l1", sparsify=False, steps=3)
    recipe("v8n-256-r0.7", "v8n-256", "256", scratch=True)
    return jobs


def gpu_bench(out: Path) -> None:
    """Torch on CUDA: the 640 baseline vs its 0.7 prunes with several channel multiples (FP32/FP16, batch 1/32)."""
    sys.path.insert(0, str(REPO))
    import torch

    from targets.bench import BenchConfig, measure_inference
    from targets.torch_runner import TorchCudaRunner
    from toolchain.models.loading import example_input, load_model
    from toolchain.models.model_stats import model_stats
    from toolchain.models.pruning import PruneConfig, prune_structured

    loaded = load_model(REPO / "assets" / "yolov8n-synth-640.pt")
    example = example_input(loaded, 640, None)
    models = {"unpruned": loaded.model.float()}
    for multiple in (8, 16, 32, 64):
        models[f"0.7 round-to {multiple}"] = prune_structured(
            loaded, PruneConfig(ratio=0.7, round_to=None if multiple == 1 else multiple), example).model
    rows = []
    for label, model in models.items():
        stats = model_stats(model, example)
        for batch, precision, graphs in ((1, "f32", True), (1, "f16", True), (1, "f16", False), (32, "f32", True),
                                         (32, "f16", True)):
            runner = TorchCudaRunner(model, (batch, 3, 640, 640), precision, graphs=graphs)
            got = measure_inference(runner, label, BenchConfig(backend="torch", device="cuda", duration=1.0,
                                                                warmup=10))
            rows.append({"model": label, "batch": batch, "precision": precision, "cuda_graph": graphs,
                         "images_per_s": got.throughput_fps, "median_ms": got.latency.median_ms,
                         "device": got.device, "backend": got.backend_version, "macs": stats.macs,
                         "params": stats.params})
            print(json.dumps(rows[-1]), flush=True)
            del runner
            torch.cuda.empty_cache()
    (out / "gpu_bench.json").write_text(json.dumps(rows, indent=2))


def run(jobs: list[Job], work: Path, slots: int, deadline: float, started: float) -> dict:
    """Run ``jobs`` respecting their needs, ``slots`` at a time, until all ended or the deadline."""
    results, logs = work / "results", work / "logs"
    results.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    status: dict[str, dict] = {}
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    pending = list(jobs)
    env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    while pending or running:
        now = time.time() - started
        for name, (proc, t0) in list(running.items()):
            if proc.poll() is not None:
                job = next(j for j in jobs if j.name == name)
                ok = proc.returncode == 0 and (job.produces is None or job.produces.exists())
                status[name] = {"ok": ok, "rc": proc.returncode, "seconds": round(time.time() - t0, 1)}
                print(f"[{now:6.0f}s] {'done' if ok else 'FAILED'} {name} ({status[name]['seconds']} s)", flush=True)
                del running[name]
        if now > deadline:
            for name, (proc, t0) in running.items():
                proc.kill()
                status[name] = {"ok": False, "rc": None, "seconds": round(time.time() - t0, 1),
                                "why": f"stopped at the {deadline:.0f} s deadline"}
            for job in pending:
                status[job.name] = {"ok": False, "rc": None, "why": "not started before the deadline"}
            break
        for job in list(pending):
            if len(running) >= slots:
                break
            if any(status.get(n, {}).get("ok") is False for n in job.needs):
                status[job.name] = {"ok": False, "rc": None, "why": "an input job failed"}
                pending.remove(job)
                continue
            if all(status.get(n, {}).get("ok") for n in job.needs):
                pending.remove(job)
                if job.produces is not None and job.produces.exists():  # finished in an earlier run
                    status[job.name] = {"ok": True, "rc": 0, "seconds": 0.0, "why": "done in an earlier run"}
                    continue
                fh_out = open(results / f"{job.name}.json", "w")
                fh_err = open(logs / f"{job.name}.log", "w")
                running[job.name] = (subprocess.Popen(job.argv, stdout=fh_out, stderr=fh_err, env=env, cwd=REPO),
                                     time.time())
                print(f"[{now:6.0f}s] start {job.name}", flush=True)
        time.sleep(1)
    return status


def pack(work: Path, out: Path) -> list[str]:
    """results/logs/summary into results.tar.gz; the weights that matter into tars of at most 15 MiB."""
    with tarfile.open(out / "results.tar.gz", "w:gz") as tar:
        for name in ("results", "logs", "summary.json", "gpu_bench.json"):
            if (work / name).exists():
                tar.add(work / name, arcname=name)
        for extra in sorted(work.glob("*/sparsity.json")) + sorted(work.glob("*/results.csv")):
            tar.add(extra, arcname=f"runs/{extra.parent.name}/{extra.name}")
    weights = sorted(work.glob("base-*/weights/best.pt")) + sorted(work.glob("ft-*/weights/best.pt")) + \
        sorted(work.glob("scratch-*/weights/best.pt")) + \
        sorted(work.glob("sparse-v8n-640-r0.7/weights/last.pt")) + sorted(work.glob("sparse-v8n-256-r0.7/weights/last.pt"))
    packs, current, size = [], [], 0
    for path in weights:
        if size + path.stat().st_size > MAX_PACK and current:
            packs.append(current)
            current, size = [], 0
        current.append(path)
        size += path.stat().st_size
    if current:
        packs.append(current)
    names = []
    for i, group in enumerate(packs[:7]):
        name = out / f"models-{i + 1}.tar"
        with tarfile.open(name, "w") as tar:
            for path in group:
                tar.add(path, arcname=str(path.relative_to(work)))
        names.append(name.name)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scale", choices=("full", "quick"), default="full")
    parser.add_argument("--slots", type=int, default=6)
    parser.add_argument("--deadline", type=float, default=540.0, help="Seconds from the start; then stop and pack.")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work", type=Path, default=None, help="Where runs go (default: OUT/../recovery-work).")
    args = parser.parse_args()
    started = time.time()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = (args.work or out.parent / "recovery-work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        try:
            gpu_bench(work)
        except Exception as exc:  # the training matrix still runs
            (work / "gpu_bench.json").write_text(json.dumps({"error": repr(exc)}))
            print(f"gpu bench failed: {exc!r}", flush=True)
    status = run(plan(work, args.scale, args.device, cuda), work, args.slots, args.deadline, started)
    summary = {"status": status, "seconds": round(time.time() - started, 1), "scale": args.scale, "cuda": cuda,
               "device": torch.cuda.get_device_name(0) if cuda else "cpu"}
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({"packed": pack(work, out), "ok": sum(s["ok"] for s in status.values()), "jobs": len(status)}))


if __name__ == "__main__":
    main()
