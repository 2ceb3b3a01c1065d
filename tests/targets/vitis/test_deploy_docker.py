"""deploy vitis against a fake ``docker``: the exact container commands, the subgraph gate, clear failures.

The fake docker (fake_tools/fake_docker.py) really runs the workspace's quantize.py (against a
fake pytorch_nndct) and compile.sh (against a fake vai_c_xir) on this machine, so the scripts
edgeprune writes are executed, not just inspected.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shlex
from pathlib import Path

import cv2
import numpy as np
import pytest

from toolchain.models.imagedata import calibration_batches
from targets.vitis.compile_log import CompileLogError, parse_compile_log, require_single_subgraph
from targets.base import ExportConfig
from toolchain.pipelines.deploy import deploy
from targets.vitis.docker import DockerError, check_docker

from vitis_testlib import IMAGE, invoke, one_error_line

ARCH = "/opt/vitis_ai/compiler/arch/DPUCZDX8G/KV260/arch.json"
CONDA = "source /opt/vitis_ai/conda/etc/profile.d/conda.sh && conda activate vitis-ai-pytorch && "


def _run_prefix(workspace) -> list[str]:
    return ["run", "--rm", "-e", f"USER={getpass.getuser()}", "-e", f"UID={os.getuid()}", "-e", f"GID={os.getgid()}",
            "-v", f"{workspace.resolve()}:/workspace", "-w", "/workspace", IMAGE, "bash", "-c"]


def vitis_config(data, calib_images, **options) -> ExportConfig:
    return ExportConfig(precision="int8", data=str(data), calib_images=calib_images, options=options)


def test_quantize_and_compile_run_in_the_vitis_image_with_the_workspace_mounted(fake_tools, baseline_pt, synth_data,
                                                                               tmp_path):
    out = tmp_path / "kv260"
    result = deploy("vitis", baseline_pt, out, vitis_config(synth_data, 8, eval_images=6))
    commands = result.record["docker_commands"]
    ws = out / "workspace"
    prefix = _run_prefix(ws)
    # the containers ran on the staged workspace beside --out (moved into place when the deploy completed)
    calls = fake_tools.calls("docker")
    mounted = Path(calls[1][calls[1].index("-v") + 1].split(":")[0])
    assert mounted.parent.parent == out.parent.resolve() and mounted.parent.name.startswith(".kv260.")
    assert not mounted.parent.exists() and (out / "workspace" / "quantize_result").is_dir()
    staged = _run_prefix(mounted)
    assert calls == [
        ["image", "inspect", IMAGE],
        staged + [CONDA + "python quantize.py --quant-mode calib && python quantize.py --quant-mode test --deploy"],
        staged + [CONDA + "bash compile.sh"],
    ]
    assert fake_tools.calls("vai_c_xir") == [["-x", "quantize_result/DPUGraph_int.xmodel", "-a", ARCH, "-o",
                                              "compiled", "-n", "yolov8n_synth"]]
    # what the user reruns names the final workspace
    assert (out / "docker_commands.sh").read_text().splitlines()[3:] == commands
    assert commands[1] == shlex.join(["docker"] + prefix + [CONDA + "bash compile.sh"])

    calib, test = json.loads((ws / "quantize_result" / "fake_nndct.json").read_text())
    assert calib["mode"] == "calib" and calib["module"] == "DPUGraph" and calib["input_args"] == [[1, 3, 256, 256]]
    assert sum(shape[0] for shape in calib["forwards"]) == 8 and calib["calls"] == ["export_quant_config"]
    assert test["mode"] == "test" and test["forwards"] == [[1, 3, 256, 256]] * 6
    assert test["calls"] == [{"export_xmodel": {"output_dir": "quantize_result", "deploy_check": False}}]

    # the calibration PNGs are exactly the letterboxed images every other target calibrates on
    pngs = sorted((ws / "calib").glob("*.png"))
    for png, ref in zip(pngs, calibration_batches(synth_data, 256, 8)):
        rgb = cv2.imread(str(png))[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        assert np.array_equal(rgb, ref)
    assert len(pngs) == 8

    record = json.loads((out / "deploy.json").read_text())
    assert record["target"] == "vitis" and record["precision"] == "int8" and record["dpu"] == "DPUCZDX8G_ISA1_B4096"
    assert record["compile"]["dpu_subgraphs"] == 1 and record["calibration"]["images"] == 8
    assert record["image"] == IMAGE and record["docker_commands"] == commands
    assert record["source"]["kind"] == "ultralytics" and record["fidelity"]["max_abs_diff"] <= 1e-4
    assert record["preflight"]["expected_dpu_subgraphs"] > 1 and "silu" in record["preflight"]["cpu_fallback_ops"]
    assert any("dpu-rewrite" in note for note in record["notes"])  # the SiLU model was flagged before Docker ran
    accuracy = record["accuracy"]  # fake quantizer = float model: the replayed outputs must score identically
    assert accuracy["images"] == 6 and accuracy["torch_fp32"]["map50"] > 0.5 and accuracy["map50_95_drop"] == 0.0
    assert record["runner"] is None and "board bench" in record["speed"]  # no invented speed

    bundle = out / "board"
    assert sorted(p.name for p in bundle.iterdir()) == ["metadata.yaml", "run_kv260.py", "yolov8n_synth.xmodel"]
    ours = json.loads((bundle / "metadata.yaml").read_text())["edgeprune"]
    assert ours["vitis"] == {**ours["vitis"], "xmodel": "yolov8n_synth.xmodel"}
    assert ours["head"] == {"format": "dfl", "strides": [8, 16, 32], "reg_max": 16, "nc": 3}


def test_more_than_one_dpu_subgraph_fails_unless_accepted(fake_tools, rewritten_pt, synth_data, tmp_path,
                                                         monkeypatch):
    monkeypatch.setenv("FAKE_DPU_SUBGRAPHS", "3")
    monkeypatch.setenv("FAKE_QUANTIZE_STUB", "1")  # quantize.py itself runs in the test above
    out = tmp_path / "kv260"
    cfg = vitis_config(synth_data, 1, eval_images=0)
    with pytest.raises(CompileLogError, match=r"the compiled model has 3 DPU subgraphs, expected 1") as failure:
        deploy("vitis", rewritten_pt, out, cfg)
    assert "edgeprune preflight" in str(failure.value) and "--allow-cpu-subgraphs" in str(failure.value)
    assert not (out / "deploy.json").exists() and not (out / "board").exists()
    assert not out.exists()  # the staged deploy folder is gone; the compile log is kept and named
    kept = re.search(r"\((/\S+compile-\S+\.log)\)", str(failure.value)).group(1)
    summary = parse_compile_log(kept)  # what the compiler said, kept for the user
    assert (summary.dpu_subgraphs, summary.total_subgraphs, summary.target_architecture) == (
        3, 7, "DPUCZDX8G_ISA1_B4096")
    require_single_subgraph(summary, allow_cpu_subgraphs=True)  # accepted on request


def test_compile_log_without_a_subgraph_count_is_an_error(tmp_path):
    log = tmp_path / "compile.log"
    log.write_text("[UNILOG][FATAL][XIR_OP_DEF_SHAPE_UNMATCH] ...\n")
    with pytest.raises(CompileLogError, match="has no 'DPU subgraph number' line"):
        parse_compile_log(log)
    with pytest.raises(CompileLogError, match="the compiler wrote no log"):
        parse_compile_log(tmp_path / "missing.log")


def test_missing_docker_or_image_is_a_one_sentence_error_before_any_work(fake_tools, rewritten_pt, synth_data,
                                                                         tmp_path, monkeypatch):
    args = ["deploy", "vitis", rewritten_pt, "--out", tmp_path / "out", "--data", synth_data]
    empty = tmp_path / "empty-path"
    empty.mkdir()
    with monkeypatch.context() as no_docker:
        no_docker.setenv("PATH", str(empty))
        line = one_error_line(invoke(*args))
    assert "the `docker` command was not found on PATH" in line and "--dry-run" in line
    monkeypatch.setenv("FAKE_DOCKER_IMAGES", "")
    line = one_error_line(invoke(*args))
    assert f"the Docker image {IMAGE} is not present locally; pull it with `docker pull {IMAGE}`" in line
    assert fake_tools.calls("docker") == [["image", "inspect", IMAGE]]  # nothing was run
    assert not (tmp_path / "out").exists()  # and nothing written
    monkeypatch.setenv("FAKE_DOCKER_DAEMON_DOWN", "1")
    with pytest.raises(DockerError, match="the Docker daemon is not reachable"):
        check_docker(IMAGE)


def test_dry_run_writes_the_workspace_and_prints_the_commands_without_docker(fake_tools, rewritten_pt, synth_data,
                                                                            tmp_path):
    out = tmp_path / "dry"
    run = invoke("deploy", "vitis", rewritten_pt, "--out", out, "--data", synth_data, "--calib-images", "3",
                 "--eval-images", "2", "--fast-finetune", "--dry-run")
    assert run.exit_code == 0, run.output
    assert fake_tools.calls() == []  # docker was not even asked about the image
    commands = (out / "docker_commands.sh").read_text().splitlines()[3:]
    printed = [line for line in run.output.splitlines() if line.startswith("docker run")]
    assert printed == commands and len(commands) == 2
    assert "--quant-mode calib --fast-finetune" in commands[0] and "--deploy --fast-finetune" in commands[0]
    ws = out / "workspace"
    assert len(list((ws / "calib").glob("*.png"))) == 3 and len(list((ws / "eval").glob("*.png"))) == 2
    config = json.loads((ws / "config.json").read_text())
    assert config["imgsz"] == [256, 256]
    assert config["head"] == {"format": "dfl", "strides": [8, 16, 32], "reg_max": 16, "nc": 3}
    assert "-a /opt/vitis_ai/compiler/arch/DPUCZDX8G/KV260/arch.json" in (ws / "compile.sh").read_text()
    assert not (out / "deploy.json").exists()
