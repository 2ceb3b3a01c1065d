"""YOLOv7-repository-style checkpoints: an IDetect head with ImplicitA/ImplicitM, classes pickled as models.yolo.

The model comes from ``yolov7_style/`` (a stand-in written for these tests: no YOLOv7 code is
installable offline); the checkpoint is saved as YOLOv7's train.py saves one (``model`` and
``ema`` in fp16, ``opt`` with ``img_size``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from toolchain.cli.main import cli
from toolchain.models.sources.yolo_repo import REPO_PACKAGES, load_repo_checkpoint, use_repository

ROOT = Path(__file__).resolve().parent / "yolov7_style"
IMGSZ = 256


def _repository_modules() -> dict:
    return {n: m for n, m in sys.modules.items() if n.split(".")[0] in REPO_PACKAGES}


@pytest.fixture(scope="module")
def v7_ckpt(tmp_path_factory):
    before = _repository_modules()  # another test module's repository, put back afterwards
    use_repository(ROOT)
    from models.yolo import Model

    torch.manual_seed(0)
    model = Model(nc=3).eval()
    path = tmp_path_factory.mktemp("v7") / "yolov7-style.pt"
    torch.save({"epoch": 10, "model": model.half(), "ema": model.half(), "updates": 0, "optimizer": None,
                "opt": {"img_size": [IMGSZ, IMGSZ], "data": "/nowhere/voc.yaml"}}, path)
    yield path
    for name in _repository_modules():
        del sys.modules[name]
    sys.modules.update(before)


def _invoke(*args):
    result = CliRunner().invoke(cli, ["--repo", str(ROOT), *args])
    assert result.exit_code == 0, result.output[-3000:]
    return json.loads(result.output[result.output.index("{"):]) if "--json" in args else result


@pytest.fixture(scope="module")
def v7_pruned(v7_ckpt):
    out = v7_ckpt.with_name("p50.pt")
    return out, _invoke("prune", str(v7_ckpt), "--ratio", "0.5", "--round-to", "4", "--out", str(out), "--json")


def test_the_implicit_layers_lose_the_channels_their_convs_lose(v7_ckpt, v7_pruned):
    out, report = v7_pruned
    assert report["input_shape"] == [1, 3, IMGSZ, IMGSZ]  # opt's img_size
    assert report["after"]["macs"] < 0.45 * report["before"]["macs"]
    pruned, source = load_repo_checkpoint(out), load_repo_checkpoint(v7_ckpt)
    assert type(pruned.head).__name__ == "IDetect" and pruned.flavour == "YOLOv7"
    for conv, ia, im in zip(pruned.head.m, pruned.head.ia, pruned.head.im):
        assert ia.implicit.shape[1] == conv.in_channels and im.implicit.shape[1] == conv.out_channels == 3 * 8
    assert any(a.in_channels < b.in_channels for a, b in zip(pruned.head.m, source.head.m))
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        assert pruned.model(x)[0].shape == source.model(x)[0].shape == (1, 3 * (32 * 32 + 16 * 16 + 8 * 8), 8)
    saved = torch.load(out, map_location="cpu", weights_only=False)  # what the repository's loader reads
    assert saved["ema"] is None and saved["model"].model[-1].ia[0].implicit.dtype == torch.float16


def test_label_free_finetune_deploy_and_eval(v7_pruned, micro_data, tmp_path):
    from targets.registry import get_target
    from toolchain.models.sources.base import SourceRequest
    from toolchain.models.sources.yolo_repo import YoloRepoSource

    out, _ = v7_pruned
    record = _invoke("finetune", str(out), "--images", str(micro_data.parent / "images" / "train"), "--epochs", "1",
                     "--batch", "4", "--out", str(tmp_path / "ft"), "--json")
    tuned = Path(record["weights"])
    assert load_repo_checkpoint(tuned).head.ia[0].implicit.shape == load_repo_checkpoint(out).head.ia[0].implicit.shape
    report = _invoke("eval", str(tuned), "--data", str(micro_data), "--json")
    assert report["imgsz"] == IMGSZ and 0.0 <= report["map50_95"] <= 1.0
    source = YoloRepoSource().prepare(tuned, SourceRequest(None))
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        expected = source.module(x).numpy()
    for target in ("onnx", "openvino"):
        _invoke("deploy", target, str(tuned), "--precision", "fp32", "--out", str(tmp_path / target))
        deployed = json.loads((tmp_path / target / "deploy.json").read_text())
        runner = get_target(target).open(str(tmp_path / target / deployed["artifact"]), precision="f32")
        got = np.asarray(runner(x.numpy()))
        assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max(), target


def test_the_dpu_graph_folds_the_implicit_layers_and_decodes_as_idetect(v7_ckpt):
    from repo_testlib import dpu_maps_vs_rows

    use_repository(ROOT)
    rows, decoded = dpu_maps_vs_rows(v7_ckpt, IMGSZ, perturb_implicit=True)
    assert decoded.shape == rows.shape
    assert np.abs(decoded - rows).max() <= 1e-4 * np.abs(rows).max()
