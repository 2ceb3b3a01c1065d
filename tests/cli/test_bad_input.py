"""Bad input never crashes, never lies, never leaves debris: a corpus over every command.

Every case runs the real CLI in this process (Click's runner, so the ~100 cases share one torch
import) on tiny real files: an untrained yolov8n at 64 px, its OpenVINO IR and ONNX, a 64 px
synthetic data set, a three-layer Darknet cfg with random weights. Each case must exit 2 with
one ``edgeprune: error:`` line on stderr that names the file or option, print no traceback, keep
every input byte-identical, and leave nothing at ``--out`` or anywhere in the inputs' folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from darknet_testlib import tiny_cfg
from toolchain.cli.main import cli
from toolchain.core.fileio import sha256_of

TINY_CFG = tiny_cfg()


def _copy_data(src: Path, dest: Path) -> Path:
    """A copy of the synthetic set whose data.yaml points at the copy."""
    shutil.copytree(src.parent, dest)
    text = (dest / "data.yaml").read_text().replace(str(src.parent), str(dest))
    (dest / "data.yaml").write_text(text)
    return dest / "data.yaml"


@pytest.fixture(scope="module")
def kit(tmp_path_factory) -> dict[str, str]:
    """Every input the corpus uses, good and bad, in one folder whose every byte is checked after each case."""
    from cfg_codegen.build import random_model
    from cfg_codegen.parser import parse_cfg
    from cfg_codegen.weights import write_weights
    from targets.base import ExportConfig
    from toolchain.pipelines.deploy import deploy
    from toolchain.models.checkpoint import save_model
    from toolchain.models.loading import LoadedModel
    from toolchain.core.synth import SynthConfig, generate
    from toolchain.models.zoo import build

    root = tmp_path_factory.mktemp("bad-input-kit")
    k: dict[str, Path] = {"root": root}
    model, _ = build("yolov8n.yaml", 3)
    k["model"] = root / "m.pt"
    save_model(LoadedModel(str(k["model"]), "ultralytics", model, {}), model, k["model"])
    k["data"] = Path(generate(root / "data", SynthConfig(train=6, val=4, imgsz=64, seed=1)).data_yaml)
    k["ir"] = Path(deploy("openvino", str(k["model"]), root / "ir", ExportConfig(precision="fp32", imgsz=64),
                          evaluate=False).artifact)
    k["onnx"] = Path(deploy("onnx", str(k["model"]), root / "onnxdeploy", ExportConfig(precision="fp32", imgsz=64),
                            evaluate=False).artifact)
    k["ir_deploy"] = root / "ir"
    # damaged artifacts
    xml = next(k["ir"].glob("*.xml"))
    for name, damage in (("trunc_bin", lambda d: open(d / xml.with_suffix(".bin").name, "r+b").truncate(1000)),
                         ("trunc_xml", lambda d: open(d / xml.name, "r+b").truncate(400)),
                         ("no_bin", lambda d: (d / xml.with_suffix(".bin").name).unlink())):
        k[name] = root / name
        shutil.copytree(k["ir"], k[name])
        damage(k[name])
    k["not_ir_xml"] = root / "notir" / "model.xml"
    k["not_ir_xml"].parent.mkdir()
    k["not_ir_xml"].write_text("<?xml version='1.0'?><html><body/></html>\n")
    k["fake_onnx"] = root / "fake.onnx"
    k["fake_onnx"].write_bytes(b"this is not a protobuf\n")
    k["trunc_onnx"] = root / "trunc.onnx"
    k["trunc_onnx"].write_bytes(k["onnx"].read_bytes()[:4000])
    for name, content in (("bad_record", "{not json"), ("list_record", "[]")):
        k[name] = root / name
        shutil.copytree(root / "onnxdeploy", k[name])
        (k[name] / "deploy.json").write_text(content)
    k["bad_meta"] = root / "bad_meta"
    shutil.copytree(k["ir"], k["bad_meta"])
    (k["bad_meta"] / "metadata.yaml").write_text("names: [unclosed\n")
    # damaged checkpoints and other objects
    blob = k["model"].read_bytes()
    for name, content in (("trunc_pt", blob[:5000]), ("empty_pt", b""), ("text_pt", b"hello, I am text\n")):
        k[name] = root / f"{name}.pt"
        k[name].write_bytes(content)
    k["state_dict"] = root / "sd.pt"
    torch.save({"w": torch.zeros(3)}, k["state_dict"])
    k["a_list"] = root / "list.pt"
    torch.save([1, 2, 3], k["a_list"])
    k["plain"] = root / "plain.pt"
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)), k["plain"])
    # Darknet
    k["cfg"] = root / "tiny.cfg"
    k["cfg"].write_text(TINY_CFG)
    k["weights"] = root / "tiny.weights"
    write_weights(k["weights"], parse_cfg(k["cfg"]), random_model(parse_cfg(k["cfg"]), 64, 64, seed=0)[1])
    k["short_weights"] = root / "short.weights"
    k["short_weights"].write_bytes(k["weights"].read_bytes()[:300])
    k["lonely_cfg"] = root / "lonely" / "tiny.cfg"  # no .weights beside it
    k["lonely_cfg"].parent.mkdir()
    k["lonely_cfg"].write_text(TINY_CFG)
    k["bad_cfg"] = root / "bad.cfg"
    k["bad_cfg"].write_text("[net]\nwidth=64\nheight=64\nchannels=3\n[convolutional]\nfilters=eight\nsize=3\n")
    k["unknown_cfg"] = root / "unknown.cfg"
    k["unknown_cfg"].write_text(TINY_CFG.replace("[yolo]", "[teleport]"))
    # data sets
    k["data_invalid_yaml"] = root / "invalid.yaml"
    k["data_invalid_yaml"].write_text("train: [a\nval: b\n")
    k["data_list_yaml"] = root / "list.yaml"
    k["data_list_yaml"].write_text("- a\n- b\n")
    k["data_nc_names"] = root / "ncnames.yaml"
    k["data_nc_names"].write_text(k["data"].read_text().replace("nc: 3", "nc: 4"))
    k["data_nc5"] = root / "nc5.yaml"
    k["data_nc5"].write_text("path: " + str(k["data"].parent) + "\ntrain: images/train\nval: images/val\n"
                             "names: {0: a, 1: b, 2: c, 3: d, 4: e}\n")
    missing = root / "missing_ds"
    missing.mkdir()
    k["data_missing"] = missing / "data.yaml"
    split_yaml = "train: images/train\nval: images/val\nnames: {0: a, 1: b, 2: c}\n"
    k["data_missing"].write_text(f"path: {missing}\n" + split_yaml)
    empty = root / "empty_ds"
    (empty / "images" / "val").mkdir(parents=True)
    (empty / "images" / "train").mkdir(parents=True)
    k["data_empty"] = empty / "data.yaml"
    k["data_empty"].write_text(f"path: {empty}\n" + split_yaml)
    for name, first_label in (("data_columns", "0 0.5 0.5\n"), ("data_range", "0 0.5 0.5 1.7 0.2\n"),
                              ("data_class", "7 0.5 0.5 0.2 0.2\n"), ("data_words", "zero 0.5 0.5 0.2 0.2\n")):
        k[name] = _copy_data(k["data"], root / name)
        label = sorted((k[name].parent / "labels" / "val").glob("*.txt"))[0]
        label.write_text(first_label)
    k["data_jpeg"] = _copy_data(k["data"], root / "data_jpeg")
    image = sorted((k["data_jpeg"].parent / "images" / "val").glob("*"))[0]
    image.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    k["data_truncjpeg"] = _copy_data(k["data"], root / "data_truncjpeg")
    image = sorted((k["data_truncjpeg"].parent / "images" / "val").glob("*"))[0]
    image.write_bytes(image.read_bytes()[:-200])
    # run folders
    for name, files in (("run_empty", {}), ("run_garbage", {"sweep.json": "{{{ not json"}),
                        ("run_object", {"sweep.json": "{}"}),
                        ("run_jsonl", {"sweep.json": json.dumps({"config": {"max_drop": 0.02, "data": "x",
                                                                             "imgsz": 64}, "points": []}),
                                       "sweep.jsonl": '{"ratio": 0.0}\ngarbage line\n{"ratio": 0.1}\n'})):
        k[name] = root / name
        k[name].mkdir()
        for fname, text in files.items():
            (k[name] / fname).write_text(text)
    k["regular"] = root / "regular-file"
    k["regular"].write_text("a regular file\n")
    k["foreign"] = root / "foreign"
    k["foreign"].mkdir()
    (k["foreign"] / "thesis.tex").write_text("three years of work\n")
    return {name: str(path) for name, path in k.items()}


def tree_digest(root: str) -> dict[str, str]:
    """Every file and folder under ``root`` with its sha256 (folders: "dir")."""
    return {str(p.relative_to(root)): ("dir" if p.is_dir() else sha256_of(p)) for p in sorted(Path(root).rglob("*"))}


@pytest.fixture(scope="module")
def kit_digest(kit) -> dict[str, str]:
    return tree_digest(kit["root"])


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    names: tuple[str, ...]  # fragments the error line must contain (the file or option, the values)


def case(case_id: str, command: str, *names: str) -> Case:
    return Case(case_id, tuple(command.split()), names)


M = "{model}"
CASES = [
    # model files: missing, empty, damaged, not a model
    case("prune-missing", "prune {root}/nope.pt --ratio 0.3 --out {out}", "nope.pt", "does not exist"),
    case("prune-empty", "prune {empty_pt} --ratio 0.3 --out {out}", "empty_pt.pt", "empty"),
    case("prune-truncated", "prune {trunc_pt} --ratio 0.3 --out {out}", "trunc_pt.pt", "cut short at 5000 bytes"),
    case("prune-text", "prune {text_pt} --ratio 0.3 --out {out}", "text_pt.pt", "neither a torch.save zip"),
    case("prune-state-dict", "prune {state_dict} --ratio 0.3 --out {out}", "sd.pt", "state_dict"),
    case("prune-list", "prune {a_list} --ratio 0.3 --out {out}", "list.pt", "holds a list"),
    case("prune-folder-model", "prune {root} --ratio 0.3 --out {out}", "MODEL", "directory"),
    case("prune-plain-no-shape", "prune {plain} --ratio 0.3 --out {out}", "--input-shape"),
    case("prune-plain-wrong-channels", "prune {plain} --ratio 0.3 --out {out} --input-shape 1,5,32,32",
         "(1, 5, 32, 32)"),
    case("prune-cfg", "prune {cfg} --ratio 0.3 --out {out}", "tiny.cfg", "cfg-prune"),
    case("eval-truncated-pt", "eval {trunc_pt} --data {data}", "trunc_pt.pt", "not a readable"),
    case("deploy-truncated-pt", "deploy onnx {trunc_pt} --out {out} --precision fp32", "trunc_pt.pt"),
    case("finetune-truncated-pt", "finetune {trunc_pt} --data {data} --out {out} --epochs 1", "trunc_pt.pt"),
    case("sparsify-truncated-pt", "sparsify {trunc_pt} --data {data} --out {out} --epochs 1", "trunc_pt.pt"),
    case("sweep-truncated-pt", "sweep {trunc_pt} --data {data} --out {out}", "trunc_pt.pt"),
    case("preflight-truncated-pt", "preflight {trunc_pt}", "trunc_pt.pt"),
    case("dpu-rewrite-truncated-pt", "dpu-rewrite {trunc_pt} --out {out}", "trunc_pt.pt"),
    case("bench-truncated-pt", "bench {trunc_pt} --iterations 2", "trunc_pt.pt"),
    case("finetune-plain-module", "finetune {plain} --data {data} --out {out} --epochs 1", "plain.pt", "nn.Module"),
    # damaged artifacts
    case("bench-truncated-bin", "bench {trunc_bin} --iterations 2", "trunc_bin", ".bin", "needs"),
    case("bench-truncated-xml", "bench {trunc_xml} --iterations 2", "trunc_xml", "not valid XML"),
    case("bench-missing-bin", "bench {no_bin} --iterations 2", "no_bin", "does not exist"),
    case("bench-not-ir-xml", "bench {not_ir_xml} --iterations 2", "model.xml", "<net>"),
    case("bench-fake-onnx", "bench {fake_onnx} --iterations 2", "fake.onnx", "not a readable ONNX"),
    case("bench-truncated-onnx", "bench {trunc_onnx} --iterations 2", "trunc.onnx", "not a readable ONNX"),
    case("bench-corrupt-deploy-json", "bench {bad_record} --iterations 2", "deploy.json", "line 1"),
    case("bench-list-deploy-json", "bench {list_record} --iterations 2", "deploy.json", "deploy record"),
    case("bench-corrupt-metadata", "bench {bad_meta} --iterations 2", "metadata.yaml", "YAML"),
    case("eval-truncated-bin", "eval {trunc_bin} --data {data}", "trunc_bin", ".bin"),
    case("eval-fake-onnx", "eval {fake_onnx} --data {data}", "fake.onnx"),
    case("eval-truncated-xml", "eval {trunc_xml} --data {data}", "trunc_xml", "XML"),
    case("compare-all-bad", "bench compare {fake_onnx} {trunc_bin} --iterations 2", "fake.onnx", "trunc_bin"),
    case("eval-static-ir-other-size", "eval {ir_deploy} --data {data} --imgsz 96", "static 64x64", "96x96"),
    case("bench-static-ir-other-size", "bench {ir_deploy} --imgsz 96 --iterations 2", "96", "64x64"),
    # unwritable or wrong outputs, refused before any work
    case("prune-out-under-file", "prune {model} --ratio 0.3 --out {regular}/x.pt", "--out", "regular-file"),
    case("prune-out-folder", "prune {model} --ratio 0.3 --out {root}", "--out", "folder"),
    case("prune-out-proc", "prune {model} --ratio 0.3 --out /proc/edgeprune/x.pt", "--out", "/proc"),
    case("prune-out-is-input", "prune {model} --ratio 0.3 --out {model}", "m.pt", "input"),
    case("deploy-out-is-file", "deploy onnx {model} --out {regular} --precision fp32", "--out", "regular-file"),
    case("deploy-out-under-file", "deploy openvino {model} --out {regular}/d --precision fp32", "--out", "regular-file"),
    case("deploy-out-foreign-folder", "deploy onnx {model} --out {foreign} --precision fp32 --imgsz 64", "--out",
         "foreign", "other files"),
    case("deploy-out-proc", "deploy onnx {model} --out /proc/edgeprune --precision fp32", "--out", "/proc"),
    case("synth-out-under-file", "data synth {regular}/d --train 2 --val 1 --imgsz 64", "regular-file"),
    case("synth-out-is-file", "data synth {regular} --train 2 --val 1 --imgsz 64", "regular-file"),
    case("cfg2py-out-under-file", "cfg2py {cfg} --out {regular}/m.py", "--out", "regular-file"),
    case("cfg2py-out-folder", "cfg2py {cfg} --out {root}", "--out", "folder"),
    case("cfg-prune-out-is-file", "cfg-prune {cfg} {weights} --global-percent 0.3 --out {regular}", "--out"),
    case("dpu-rewrite-out-under-file", "dpu-rewrite {model} --out {regular}/x.pt", "--out", "regular-file"),
    case("train-out-under-file", "train {data} --epochs 1 --imgsz 64 --out {regular}/run", "--out"),
    case("finetune-out-under-file", "finetune {model} --data {data} --epochs 1 --out {regular}/run", "--out"),
    case("sparsify-out-is-file", "sparsify {model} --data {data} --epochs 1 --out {regular}", "--out"),
    case("sweep-out-is-file", "sweep {model} --data {data} --out {regular}", "--out", "regular-file"),
    case("demo-out-under-file", "demo --out {regular}/demo", "--out", "regular-file"),
    case("bench-json-under-file", "bench {onnx} --iterations 2 --json {regular}/b.jsonl", "--json", "regular-file"),
    case("compare-plot-under-file", "bench compare {onnx} --iterations 2 --plot {regular}/p.png", "--plot"),
    case("cfg2ir-out-under-file", "cfg2ir {cfg} {weights} --out {regular}/ir --precision fp32", "--out"),
    # data sets
    case("eval-data-missing", "eval {model} --data {root}/nope.yaml", "nope.yaml"),
    case("eval-data-invalid-yaml", "eval {model} --data {data_invalid_yaml}", "invalid.yaml", "YAML"),
    case("eval-data-list", "eval {model} --data {data_list_yaml}", "list.yaml", "data.yaml"),
    case("eval-data-nc-names", "eval {model} --data {data_nc_names}", "ncnames.yaml", "nc=4"),
    case("eval-data-other-classes", "eval {model} --data {data_nc5}", "nc=3", "nc=5"),
    case("eval-images-missing", "eval {model} --data {data_missing} --imgsz 64", "data.yaml", "images/val"),
    case("eval-images-empty", "eval {model} --data {data_empty} --imgsz 64", "data.yaml", "no images"),
    case("eval-split-test-absent", "eval {model} --data {data} --imgsz 64 --split test", "'test:'", "train, val"),
    case("eval-strict-columns", "eval {model} --data {data_columns} --imgsz 64 --strict", "3 columns", "--strict"),
    case("eval-strict-range", "eval {model} --data {data_range} --imgsz 64 --strict", "outside [0, 1]"),
    case("eval-strict-class", "eval {model} --data {data_class} --imgsz 64 --strict", "class 7"),
    case("eval-strict-words", "eval {model} --data {data_words} --imgsz 64 --strict", "non-number"),
    case("eval-strict-corrupt-jpeg", "eval {model} --data {data_jpeg} --imgsz 64 --strict", "not a readable image"),
    case("eval-strict-truncated-jpeg", "eval {model} --data {data_truncjpeg} --imgsz 64 --strict", "truncated JPEG"),
    case("artifact-eval-strict-columns", "eval {onnx} --data {data_columns} --strict", "3 columns"),
    case("train-images-missing", "train {data_missing} --epochs 1 --imgsz 64 --out {out}", "images/train"),
    case("finetune-images-empty", "finetune {model} --data {data_empty} --epochs 1 --imgsz 64 --out {out}",
         "no images"),
    case("sparsify-too-many-layers", "sparsify {model} --data {data} --epochs 1 --layers 99 --out {out}",
         "--layers must be between 1 and 6", "got 99"),
    case("sparsify-strict", "sparsify {model} --data {data_jpeg} --epochs 1 --imgsz 64 --out {out} --strict",
         "not a readable image"),
    case("deploy-int8-images-empty", "deploy onnx {model} --out {out} --precision int8 --data {data_empty} "
         "--imgsz 64", "no images"),
    case("deploy-int8-without-data", "deploy openvino {model} --out {out} --precision int8 --imgsz 64", "--data"),
    case("sweep-images-missing", "sweep {model} --data {data_missing} --imgsz 64 --out {out}", "images/val"),
    case("deploy-other-classes", "deploy onnx {model} --out {out} --data {data_nc5} --imgsz 64 --precision fp32",
         "nc=3", "nc=5"),
    # run folders
    case("report-no-sweep", "report {run_empty}", "run_empty", "sweep.json"),
    case("report-garbage", "report {run_garbage}", "sweep.json", "line 1"),
    case("report-empty-object", "report {run_object}", "sweep.json", "config"),
    case("report-garbage-line", "report {run_jsonl} --no-curves", "sweep.jsonl", "line 1"),
    case("report-on-file", "report {regular}", "RUN_DIR", "file"),
    # sizes and options
    case("prune-imgsz-huge", "prune {model} --ratio 0.3 --out {out} --imgsz 100000", "--imgsz", "100000"),
    case("prune-imgsz-tiny", "prune {model} --ratio 0.3 --out {out} --imgsz 31", "--imgsz", "31"),
    case("prune-imgsz-stride", "prune {model} --ratio 0.3 --out {out} --imgsz 100", "100", "32"),
    case("bench-imgsz-huge", "bench {model} --imgsz 9000 --iterations 2", "--imgsz", "9000"),
    case("bench-imgsz-stride", "bench {model} --imgsz 70 --iterations 2", "--imgsz", "70"),
    case("synth-imgsz-huge", "data synth {out} --imgsz 50000", "--imgsz", "50000"),
    case("eval-imgsz-stride", "eval {model} --data {data} --imgsz 33", "--imgsz", "33"),
    case("deploy-imgsz-stride", "deploy onnx {model} --out {out} --imgsz 50 --precision fp32", "--imgsz", "50"),
    case("train-imgsz-stride", "train {data} --epochs 1 --imgsz 65 --out {out}", "--imgsz", "65"),
    case("prune-round-to-no-op", "prune {model} --ratio 0.3 --out {out} --imgsz 64 --round-to 1000", "--round-to",
         "1000", "removes no channel"),
    case("prune-bad-input-shape", "prune {plain} --ratio 0.3 --out {out} --input-shape a,b", "--input-shape", "a,b"),
    case("prune-input-shape-on-yolo", "prune {model} --ratio 0.3 --out {out} --input-shape 1,3,64,64",
         "--input-shape", "--imgsz"),
    case("deploy-input-shape-on-yolo", "deploy onnx {model} --out {out} --precision fp32 --input-shape 1,3,64,64",
         "--input-shape"),
    case("prune-ratio-above-one", "prune {model} --ratio 1.5 --out {out}", "--ratio", "1.5"),
    case("prune-ratio-and-layers", "prune {model} --ratio 0.3 --layers 2 --out {out}", "--ratio", "--layers"),
    case("prune-nothing-asked", "prune {model} --out {out}", "--ratio", "--layers"),
    case("sweep-target-torch", "sweep {model} --data {data} --out {out} --target torch", "--target", "torch"),
    case("sweep-ratios-reversed", "sweep {model} --data {data} --out {out} --ratios 0.5:0.1:0.1", "--ratios",
         "start 0.5 is above stop 0.1"),
    case("sweep-ratios-zero", "sweep {model} --data {data} --out {out} --ratios 0:0.5:0.1", "--ratios"),
    case("sweep-ratios-words", "sweep {model} --data {data} --out {out} --ratios some", "--ratios", "some"),
    case("sweep-ratios-step-zero", "sweep {model} --data {data} --out {out} --ratios 0.1:0.5:0", "step"),
    case("deploy-decode-on-pt", "deploy onnx {model} --out {out} --decode --precision fp32", "--decode", "Darknet"),
    case("deploy-bn-eps-on-pt", "deploy onnx {model} --out {out} --bn-eps 1e-6 --precision fp32", "--bn-eps"),
    case("deploy-calib-images-fp32", "deploy onnx {model} --out {out} --precision fp32 --calib-images 10",
         "--calib-images", "fp32"),
    case("deploy-max-drop-fp16", "deploy onnx {model} --out {out} --precision fp16 --max-drop 0.01", "--max-drop"),
    case("deploy-no-eval-without-data", "deploy onnx {model} --out {out} --precision fp32 --no-eval", "--no-eval",
         "--data"),
    case("finetune-weight-without-distill", "finetune {model} --data {data} --out {out} --no-distill "
         "--distill-weight 2", "--distill-weight", "--no-distill"),
    case("finetune-distill-contradiction", "finetune {model} --data {data} --out {out} --no-distill --distill {model}",
         "--distill", "--no-distill"),
    case("sweep-shortcuts-on-pt", "sweep {model} --data {data} --out {out} --shortcuts 1", "--shortcuts", "Darknet"),
    case("autotune-ray-address-local", "autotune {model} --data {data} --out {out} --ray-address 1.2.3.4:6379",
         "--ray-address", "--executor ray"),
    case("autotune-bad-precision", "autotune {model} --data {data} --out {out} --precisions fp32,bf16",
         "--precisions", "fp32, fp16, int8"),
    case("autotune-vitis-target", "autotune {model} --data {data} --out {out} --targets vitis", "--targets"),
    case("train-cfg-without-data", "train {cfg} --out {out}", "tiny.cfg", "--data"),
    case("finetune-cfg-without-weights", "finetune {lonely_cfg} --data {data} --out {out}", "tiny.cfg", "--weights"),
    case("finetune-pt-with-burn-in", "finetune {model} --data {data} --out {out} --burn-in 5", "--burn-in",
         "Darknet"),
    case("sweep-ray-address-local", "sweep {model} --data {data} --out {out} --ray-address 1.2.3.4:6379",
         "--ray-address", "--executor ray"),
    case("sweep-refine-steps-without-refine", "sweep {model} --data {data} --out {out} --refine-steps 5",
         "--refine-steps", "--refine"),
    case("bench-onnx-bf16", "bench {onnx} --infer-precision bf16 --iterations 2", "--infer-precision bf16"),
    case("deploy-cuda-absent", "deploy onnx {model} --out {out} --device cuda --precision fp32 --imgsz 64", "cuda"),
    case("bench-gpu-absent", "bench {ir_deploy} --device GPU --iterations 2", "GPU"),
    case("deploy-onnx-u8-input", "deploy onnx {model} --out {out} --u8-input", "--u8-input"),
    case("deploy-vitis-fp32", "deploy vitis {model} --out {out} --precision fp32", "--precision", "fp32"),
    case("unknown-command", "depoly onnx {model}", "depoly"),
    case("unknown-option", "prune {model} --ratoi 0.3 --out {out}", "--ratoi"),
    # Darknet inputs
    case("cfg2py-bad-value", "cfg2py {bad_cfg} --out {out}", "bad.cfg", "eight"),
    case("cfg2py-unknown-section", "cfg2py {unknown_cfg} --out {out}", "unknown.cfg", "teleport"),
    case("cfg2py-short-weights", "cfg2py {cfg} --weights {short_weights} --out {out}", "short.weights"),
    case("deploy-cfg-short-weights", "deploy onnx {cfg} --weights {short_weights} --out {out} --precision fp32",
         "short.weights"),
    case("eval-cfg-without-weights", "eval {lonely_cfg} --data {data}", "tiny.cfg", "weights"),
    case("sweep-cfg-without-weights", "sweep {lonely_cfg} --data {data} --out {out}", "tiny.cfg", "--weights"),
    case("cfg-prune-percent-one", "cfg-prune {cfg} {weights} --global-percent 1.0 --out {out}",
         "--global-percent"),
]


def run_cli(args: list[str]):
    return CliRunner().invoke(cli, args, catch_exceptions=True)


def check_refused(result, names, kit, kit_digest, out: Path) -> str:
    """The contract every bad input meets; returns the error line."""
    assert not (result.exception and not isinstance(result.exception, SystemExit)), (
        f"uncaught {type(result.exception).__name__}: {result.exception}\n{result.stderr[-2000:]}")
    assert result.exit_code == 2, f"exit {result.exit_code}\nstdout: {result.stdout[-1500:]}\nstderr: {result.stderr}"
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgeprune: error:")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    for name in names:
        assert name.format(**kit) in errors[0], f"{name!r} not in {errors[0]!r}"
    assert not out.exists(), f"{out} was left behind"
    assert not list(out.parent.glob(f".{out.name}.*")), "a staging folder was left behind"
    assert tree_digest(kit["root"]) == kit_digest, "an input was modified, or something was written beside it"
    return errors[0]


@pytest.mark.parametrize("bad", CASES, ids=lambda c: c.id)
def test_bad_input_is_one_sentence_exit_2_and_leaves_nothing(bad, kit, kit_digest, tmp_path):
    out = tmp_path / "out"
    args = [a.format(**kit, out=out) for a in bad.args]
    check_refused(run_cli(args), bad.names, kit, kit_digest, out)


JSON_CASES = ["prune-truncated", "bench-fake-onnx", "eval-images-missing", "deploy-out-foreign-folder",
              "sweep-ratios-reversed", "report-garbage"]


@pytest.mark.parametrize("case_id", JSON_CASES)
def test_under_json_the_error_goes_to_stderr_and_stdout_stays_valid(case_id, kit, kit_digest, tmp_path):
    bad = next(c for c in CASES if c.id == case_id)
    out = tmp_path / "out"
    result = run_cli([a.format(**kit, out=out) for a in bad.args] + ["--json"])
    line = check_refused(result, bad.names, kit, kit_digest, out)
    if result.stdout.strip():
        assert json.loads(result.stdout)["error"] == line.removeprefix("edgeprune: error: ")


def test_compare_keeps_the_good_artifact_and_names_the_bad_one(kit, kit_digest, tmp_path):
    result = run_cli(["bench", "compare", kit["onnx"], kit["trunc_bin"], "--iterations", "3", "--json"])
    line = check_refused(result, ["trunc_bin", ".bin"], kit, kit_digest, tmp_path / "none")
    rows = json.loads(result.stdout)["rows"]
    assert [r["label"] for r in rows] == [kit["onnx"]] and rows[0]["throughput_fps"] > 0
    assert "could not run" in line


def test_a_dataset_with_skipped_files_is_counted_and_the_label_cache_stays_out_of_it(kit, kit_digest):
    """Without --strict: the run goes on, one warning gives the counts and the first file; no .cache is written."""
    result = run_cli(["eval", kit["model"], "--data", kit["data_columns"], "--imgsz", "64", "--json"])
    assert result.exit_code == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "1 of 4 images would be skipped" in warning[0] and "val_00000.txt:1" in warning[0]
    assert json.loads(result.stdout)["imgsz"] == 64
    assert tree_digest(kit["root"]) == kit_digest  # no labels/val.cache in the user's data set


def test_outputs_follow_the_umask(kit, tmp_path):
    """Staged outputs (mkstemp 0600 / mkdtemp 0700) end up as plain files would: 0644 and 0755 under umask 022."""
    old = os.umask(0o022)
    try:
        pruned = tmp_path / "p.pt"
        assert run_cli(["prune", kit["model"], "--ratio", "0.3", "--imgsz", "64", "--out", str(pruned),
                        "--latency-iters", "0"]).exit_code == 0
        deployed = tmp_path / "ir"
        result = run_cli(["deploy", "openvino", kit["model"], "--out", str(deployed), "--precision", "fp32",
                          "--imgsz", "64"])
        assert result.exit_code == 0, result.stderr
    finally:
        os.umask(old)
    assert pruned.stat().st_mode & 0o777 == 0o644
    entries = [deployed, *deployed.rglob("*")]
    assert len(entries) >= 5
    for entry in entries:
        assert entry.stat().st_mode & 0o777 == (0o755 if entry.is_dir() else 0o644), entry


def _interrupt_when(argv: list[str], ready, timeout: float = 240) -> subprocess.CompletedProcess:
    """Start the CLI, send SIGINT once ``ready()`` is true (the work is under way), and wait for it."""
    # A runner started in the background (`cmd &` without job control) passes SIGINT on as ignored, and Python
    # then installs no KeyboardInterrupt handler; the child gets the default disposition back, as at a terminal.
    proc = subprocess.Popen([sys.executable, "-m", "toolchain.cli.main", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + timeout
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the command finished before it could be interrupted: " + proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def test_sigint_during_deploy_leaves_nothing(kit, tmp_path):
    out = tmp_path / "deploy"
    staged = lambda: any(tmp_path.glob(".deploy.*"))  # noqa: E731 - the staging folder exists: work has begun
    proc = _interrupt_when(["deploy", "openvino", kit["model"], "--out", str(out), "--precision", "int8",
                            "--data", kit["data"], "--imgsz", "64"], staged)
    assert proc.returncode == -signal.SIGINT and "interrupted" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_sigint_during_prune_leaves_nothing(kit, tmp_path):
    out = tmp_path / "pruned.pt"
    staged = lambda: any(tmp_path.glob(".pruned.pt.*"))  # noqa: E731 - saved, now being measured
    proc = _interrupt_when(["prune", kit["model"], "--ratio", "0.3", "--imgsz", "64", "--out", str(out),
                            "--latency-iters", "100000"], staged)
    assert proc.returncode == -signal.SIGINT and "interrupted" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_corpus_is_broad():
    assert len(CASES) >= 80 and len({c.id for c in CASES}) == len(CASES)
    commands = {c.args[0] for c in CASES}
    assert {"prune", "eval", "deploy", "bench", "train", "finetune", "sparsify", "sweep", "report", "data",
            "cfg2py", "cfg2ir", "cfg-prune", "preflight", "dpu-rewrite", "demo"} <= commands
