"""Faults a machine does to a long job: a full disk, ``kill -9``, two runs on one output, a torn record.

Each runs the real CLI as a separate process (a kill and a lock need one) on tiny real files: an
untrained yolov8n at 64 px and a 64 px synthetic data set. The full-disk cases write to a real
3 MiB tmpfs, mounted when the tests run as root; elsewhere they skip and say why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from darknet_testlib import tiny_cfg
from toolchain.core.fileio import atomic_output, staged_folder, write_failure
from toolchain.core.jsonl import append_records, read_records
from toolchain.core.owners import owner_tag, process_start

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "toolchain.cli.main", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=600, **kwargs)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "toolchain.cli.main", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)


def wait_for(ready, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, "finished before the moment the test needs: " + proc.stderr.read()[-3000:]
        assert time.time() < deadline, "timed out waiting"
        time.sleep(0.1)


def one_error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("edgeprune: error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> dict[str, Path]:
    from toolchain.core.synth import SynthConfig, generate
    from toolchain.models.checkpoint import save_model
    from toolchain.models.loading import LoadedModel
    from toolchain.models.zoo import build

    root = tmp_path_factory.mktemp("faults-kit")
    model, _ = build("yolov8n.yaml", 3)
    path = root / "m.pt"
    save_model(LoadedModel(str(path), "ultralytics", model, {}), model, path)
    data = Path(generate(root / "data", SynthConfig(train=8, val=4, imgsz=64, seed=1)).data_yaml)
    return {"model": path, "data": data}


@contextlib.contextmanager
def small_disk(folder: Path, size: str):
    """A real tmpfs of ``size`` at ``folder`` (root only; otherwise the test skips and says why)."""
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the full-disk cases did not run")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                          text=True)
    if done.returncode:
        pytest.skip(f"could not mount a small tmpfs ({done.stderr.strip()}); the full-disk cases did not run")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.fixture
def full_disk(tmp_path):
    """A 3 MiB tmpfs: smaller than any model or IR written here, so the early space check refuses."""
    with small_disk(tmp_path / "small", "3m") as mount:
        yield mount


@pytest.mark.parametrize("case", ["deploy-onnx", "deploy-openvino", "prune", "finetune", "data-synth"])
def test_a_full_disk_is_one_sentence_and_leaves_nothing(kit, full_disk, case):
    out = full_disk / "out"
    args = {
        "deploy-onnx": ["deploy", "onnx", kit["model"], "--out", out, "--imgsz", "64"],
        "deploy-openvino": ["deploy", "openvino", kit["model"], "--out", out, "--imgsz", "64"],
        "prune": ["prune", kit["model"], "--ratio", "0.2", "--imgsz", "64", "--out", full_disk / "p.pt"],
        "finetune": ["finetune", kit["model"], "--data", kit["data"], "--out", out, "--epochs", "1", "--imgsz", "64",
                     "--batch", "4", "--workers", "0", "--no-distill"],
        "data-synth": ["data", "synth", out, "--train", "400", "--val", "100", "--imgsz", "256"],
    }[case]
    line = one_error_line(cli(*args))
    assert str(full_disk) in line and ("no space" in line or "needs at least" in line), line
    assert list(full_disk.iterdir()) == [], "left on the full disk: " + str(list(full_disk.iterdir()))


@pytest.mark.parametrize("target", ["openvino", "onnx"])
def test_a_disk_that_fills_during_the_write_is_one_sentence_too(kit, tmp_path, target):
    import torch

    weights = sum(p.numel() for p in torch.load(kit["model"], weights_only=False)["model"].parameters()) * 4
    # passes the early check (room for the fp32 weights) and fills while the artifact is written
    with small_disk(tmp_path / "small", f"{weights // 1024 + 20}k") as disk:
        line = one_error_line(cli("deploy", target, kit["model"], "--out", disk / "out", "--imgsz", "64",
                                  "--precision", "fp32"))
        assert f"no space left to write {disk / 'out'}" in line, line
        assert list(disk.iterdir()) == []


def test_two_runs_on_one_output_one_refuses_naming_the_other(kit, tmp_path):
    out = tmp_path / "cc"
    first = start("deploy", "openvino", kit["model"], "--out", out, "--imgsz", "64", "--precision", "int8",
                  "--data", kit["data"])
    wait_for(lambda: any(tmp_path.glob(".cc.*")), first)  # staging: it holds the output and is working
    second = cli("deploy", "onnx", kit["model"], "--out", out, "--imgsz", "64")
    line = one_error_line(second)
    assert f"pid {first.pid}" in line and "--wait" in line, line
    assert first.wait(timeout=600) == 0, first.stderr.read()[-3000:]
    assert sorted(p.suffix for p in out.iterdir() if p.suffix in (".xml", ".onnx")) == [".xml"]


@pytest.mark.full  # 30 s: two deploys one after the other; the refusal above is the make-test case
def test_with_wait_the_second_run_queues_and_its_result_is_left(kit, tmp_path):
    out = tmp_path / "cc"
    first = start("deploy", "openvino", kit["model"], "--out", out, "--imgsz", "64")
    wait_for(lambda: any(tmp_path.glob(".cc.*")), first)
    second = cli("--wait", "deploy", "onnx", kit["model"], "--out", out, "--imgsz", "64")
    assert first.wait(timeout=600) == 0
    assert second.returncode == 0 and "waiting for" in second.stderr, second.stderr[-3000:]
    assert [p.suffix for p in out.iterdir() if p.suffix in (".xml", ".onnx")] == [".onnx"]


def _finetune(kit, out, *extra):
    return ("finetune", kit["model"], "--data", kit["data"], "--out", out, "--epochs", "3", "--imgsz", "64",
            "--batch", "4", "--workers", "0", "--no-distill", *extra)


def _kill_after_first_epoch(kit, out: Path) -> Path:
    proc = start(*_finetune(kit, out))
    staged = lambda: next(iter(out.parent.glob(f".{out.name}.ep*/weights/last.pt")), None)  # noqa: E731
    wait_for(staged, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return staged().parent.parent


def test_kill_9_then_a_new_run_removes_the_dead_runs_staging(kit, tmp_path):
    out = tmp_path / "run"
    left = _kill_after_first_epoch(kit, out)
    assert left.exists()
    again = cli(*_finetune(kit, out, "--epochs", "1"))
    assert again.returncode == 0 and f"removed {left}" in again.stderr, again.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_kill_9_then_resume_completes_the_epochs_asked(kit, tmp_path):
    out = tmp_path / "run"
    left = _kill_after_first_epoch(kit, out)
    # As if killed while epoch 2 was being saved: its row written, its checkpoint half (the trainer writes a
    # temporary file renamed over last.pt, so last.pt is epoch 1 whole).
    csv = left / "results.csv"
    rows = csv.read_text().splitlines()
    assert len(rows) == 2, rows
    csv.write_text("\n".join([*rows, rows[1].replace(rows[1].split(",")[0], "2", 1)]) + "\n")
    (left / "weights" / ".last.pt.partial").write_bytes(b"PK\x03\x04 torn")
    resumed = cli(*_finetune(kit, out, "--resume"))
    assert resumed.returncode == 0 and "resuming from" in resumed.stderr, resumed.stderr[-3000:]
    rows = (out / "results.csv").read_text().strip().splitlines()[1:]
    assert [int(float(r.split(",")[0])) for r in rows] == [1, 2, 3]  # epoch 1 from the killed run, 2-3 resumed
    assert (out / "weights" / "best.pt").exists() and [p.name for p in tmp_path.iterdir()] == ["run"]
    assert not list((out / "weights").glob(".*")), list((out / "weights").iterdir())


def test_resume_without_a_killed_run_is_one_sentence(kit, tmp_path):
    line = one_error_line(cli(*_finetune(kit, tmp_path / "run", "--resume")))
    assert "nothing to resume" in line and str(tmp_path / "run") in line
    assert list(tmp_path.iterdir()) == []


def test_stale_staging_of_a_dead_owner_goes_a_live_ones_stays(tmp_path, caplog):
    dead = tmp_path / f".x.pt.ep{2 ** 22 + 7}-1-abcdefgh.pt"  # above Linux's default pid_max: never running
    live = tmp_path / f".x.pt.{owner_tag()}-zzzzzzzz.pt"
    other = tmp_path / f".x.pt.ep{2 ** 22 + 7}.pt"  # not a staging name
    for path in (dead, live, other):
        path.write_text("half")
    with caplog.at_level(logging.WARNING, logger="edgeprune"), atomic_output(tmp_path / "x.pt") as tmp:
        tmp.write_text("whole")
    assert not dead.exists() and live.exists() and other.exists()
    assert (tmp_path / "x.pt").read_text() == "whole" and f"removed {dead}" in caplog.text


def test_a_reused_pid_is_not_the_owner(tmp_path):
    started = process_start(os.getpid())
    assert started is not None
    reused = tmp_path / f".d.ep{os.getpid()}-{started + 1}-abcdefgh"  # this PID, another start time
    reused.mkdir()
    with staged_folder(tmp_path / "d") as stage:
        (stage / "f").write_text("1")
    assert not reused.exists() and (tmp_path / "d" / "f").exists()


def test_torn_last_record_is_a_note_and_the_next_record_starts_a_line(tmp_path, caplog):
    path = tmp_path / "sweep.jsonl"
    append_records(path, [{"ratio": 0.1}])
    with open(path, "a") as fh:
        fh.write('{"ratio": 0.2, "ma')
    with caplog.at_level(logging.WARNING, logger="edgeprune"):
        assert read_records(path, dict, "a point") == [{"ratio": 0.1}]
    assert f"{path} line 2 is incomplete" in caplog.text
    append_records(path, [{"ratio": 0.3}])
    assert read_records(path, dict, "a point") == [{"ratio": 0.1}, {"ratio": 0.3}]


def test_write_failures_name_the_path_and_the_cause(tmp_path):
    dest = tmp_path / "m.pt"
    full = write_failure(dest, OSError(28, "No space left on device"), None)
    denied = write_failure(dest, PermissionError(13, "Permission denied", str(dest)), None)
    assert "no space left to write" in str(full) and str(dest) in str(full) and "free" in str(full)
    assert str(denied) == f"cannot write {dest}: Permission denied"
    assert write_failure(dest, ValueError("a bug"), None) is None  # with space left, not the disk's fault


NON_SQUARE_CFG = tiny_cfg(128, 96)


@pytest.fixture(scope="module")
def wide_cfg(tmp_path_factory) -> Path:
    from cfg_codegen.build import random_model
    from cfg_codegen.parser import parse_cfg
    from cfg_codegen.weights import write_weights

    root = tmp_path_factory.mktemp("wide-cfg")
    cfg = root / "wide.cfg"
    cfg.write_text(NON_SQUARE_CFG)
    write_weights(root / "wide.weights", parse_cfg(cfg), random_model(parse_cfg(cfg), 96, 128, seed=0)[1])
    return cfg


def _ir_input_and_head(folder: Path) -> tuple[list[int], list[int]]:
    import numpy as np
    import openvino as ov

    model = ov.Core().compile_model(next(folder.glob("*.xml")), "CPU")
    shape = list(model.inputs[0].shape)
    out = model(np.random.default_rng(0).random(shape, dtype=np.float32))[model.outputs[0]]
    return shape, list(out.shape)


@pytest.mark.parametrize("size", [["160", "224"], ["160x224"]])
def test_cfg2ir_takes_height_and_width(wide_cfg, tmp_path, size):
    done = cli("cfg2ir", wide_cfg, wide_cfg.with_suffix(".weights"), "--imgsz", *size, "--out", tmp_path / "ir",
               "--precision", "fp32")
    assert done.returncode == 0, done.stderr[-3000:]
    shape, head = _ir_input_and_head(tmp_path / "ir")
    assert shape == [1, 3, 160, 224] and head[-2:] == [40, 56]  # the raw head map at stride 4: H/4 x W/4


def test_a_non_square_cfg_deploys_at_its_own_height_and_width(wide_cfg, tmp_path):
    done = cli("cfg2ir", wide_cfg, "--out", tmp_path / "ir", "--precision", "fp32")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _ir_input_and_head(tmp_path / "ir")[0] == [1, 3, 96, 128]


def test_a_non_square_size_for_a_square_only_model_is_one_sentence(kit, tmp_path):
    line = one_error_line(cli("deploy", "onnx", kit["model"], "--imgsz", "160", "224", "--out", tmp_path / "o"))
    assert "Ultralytics checkpoint" in line and "square --imgsz" in line, line
    line = one_error_line(cli("eval", kit["model"], "--data", kit["data"], "--imgsz", "160x224"))
    assert "not square" in line, line


@pytest.mark.full  # 17 s; make test keeps the Ultralytics kill -9 and --resume cases
def test_a_darknet_run_killed_after_an_epoch_resumes_only_with_its_own_settings(kit, wide_cfg, tmp_path):
    cfg = tmp_path / "square.cfg"
    cfg.write_text(NON_SQUARE_CFG.replace("height=96", "height=128"))
    out = tmp_path / "run"
    args = ("train", cfg, "--data", kit["data"], "--out", out, "--epochs", "3", "--imgsz", "64", "--batch", "4",
            "--workers", "0")
    proc = start(*args)
    state = lambda: next(iter(tmp_path.glob(".run.ep*/weights/state.pt")), None)  # noqa: E731
    wait_for(state, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    line = one_error_line(cli(*args, "--resume", "--lr0", "0.5"))
    assert "other settings" in line and "learning_rate" in line, line
    assert state() is not None, "a refused resume must keep the state it refused"
    resumed = cli(*args, "--resume")
    assert resumed.returncode == 0 and "resumed after epoch" in resumed.stderr, resumed.stderr[-3000:]
    rows = (out / "results.csv").read_text().strip().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3]
    assert not (out / "weights" / "state.pt").exists() and (out / "weights" / "best.weights").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "square.cfg"]


def test_optimize_resumes_a_training_step_a_killed_run_left(tmp_path):
    from toolchain.pipelines.optimize import OptimizeConfig, _train_config

    cfg = OptimizeConfig(data="data.yaml")
    out = tmp_path / "run" / "finetune"
    assert not _train_config(cfg, 5, 64, out).resume
    left = tmp_path / "run" / f".finetune.ep{2 ** 22 + 7}-1-abcdefgh"  # its process is gone
    (left / "weights").mkdir(parents=True)
    assert not _train_config(cfg, 5, 64, out).resume  # nothing to continue from: not even one epoch
    (left / "weights" / "last.pt").write_bytes(b"state")
    assert _train_config(cfg, 5, 64, out).resume
