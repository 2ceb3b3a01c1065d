"""Every supported family × task prunes (local and global) to a stock checkpoint that keeps its contract.

``make test`` runs one representative model per task plus the families with special blocks
(YOLOv9 ELAN, YOLOv10 PSA/SCDown, YOLO26 heads); ``make test-full`` runs the whole matrix of
:mod:`toolchain.models.zoo`.
"""

from __future__ import annotations

import copy
import pytest
import torch
from torch import nn

from toolchain.core.errors import PruningError, UnsupportedModelError
from toolchain.models.loading import LoadedModel, load_model
from toolchain.models.contract import flat_tensors, inference_outputs
from toolchain.models.pruning import PruneConfig, prune_structured
from toolchain.models.prune_job import prune_file
from toolchain.models.zoo import REFUSED, build, matrix

IMGSZ = 128
QUICK = {"yolo26n.yaml", "yolov9t.yaml", "yolov10n.yaml", "yolov8n-seg.yaml", "yolo11n-obb.yaml",
         "yolo26n-pose.yaml", "yolo12n-cls.yaml"}
CASES = [pytest.param(f, t, y, id=y[:-5], marks=() if y in QUICK else pytest.mark.full) for f, t, y in matrix()]
GLOBAL_QUICK = {"yolo26n.yaml"}  # make test ranks globally on this one; make test-full on all
PRUNE_CASES = [pytest.param(f, t, y, g, id=f"{y[:-5]}-{'global' if g else 'local'}",
                            marks=() if y in QUICK and (not g or y in GLOBAL_QUICK) else pytest.mark.full)
               for f, t, y in matrix() for g in (False, True)]


def _contract(path, size=IMGSZ) -> list[list[int]]:
    from toolchain.models.contract import contract_shapes

    return [list(s) for s in contract_shapes(load_model(path).model, torch.zeros(1, 3, size, size))]


@pytest.mark.parametrize("family, task, yaml_name, global_pruning", PRUNE_CASES)
def test_prunes_to_a_stock_checkpoint_with_the_same_contract(random_yolo, reload_without_edgeprune, tmp_path, family,
                                                              task, yaml_name, global_pruning):
    src = random_yolo(yaml_name)
    out = tmp_path / "pruned.pt"
    report = prune_file(str(src), str(out), PruneConfig(ratio=0.4, global_pruning=global_pruning, imgsz=IMGSZ))
    assert report.after.macs < 0.85 * report.before.macs, f"{family} {task}: MACs barely cut"
    assert report.after.params < report.before.params
    reloaded = reload_without_edgeprune(out, IMGSZ)
    assert reloaded["results"] == 1
    assert reloaded["shapes"] == _contract(src), "the task's outputs (classes, masks, keypoints, angle) changed"


def _zero_what_groups_remove(DG, groups) -> None:
    """Make every channel a group will remove output exactly 0 (SiLU(0) = 0), before it is removed."""
    with torch.no_grad():
        for group in groups:
            for item in group:
                layer, idxs = item.dep.target.module, list(item.idxs)
                if not DG.is_out_channel_pruning_fn(item.dep.handler):
                    continue
                if isinstance(layer, nn.BatchNorm2d):
                    layer.weight[idxs] = 0
                    layer.bias[idxs] = 0
                    layer.running_mean[idxs] = 0
                elif isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                    if isinstance(layer, nn.ConvTranspose2d):  # weight is (in, out, kh, kw)
                        layer.weight[:, idxs] = 0
                    else:
                        layer.weight[idxs] = 0
                    if layer.bias is not None:
                        layer.bias[idxs] = 0


@pytest.mark.parametrize("family, task, yaml_name", CASES + [pytest.param("YOLOv9", "detect", "yolov9c.yaml",
                                                                          id="yolov9c-adown", marks=pytest.mark.full)])
def test_pruning_removes_exactly_the_channels_it_chose(monkeypatch, family, task, yaml_name):
    """Index mapping check: the pruned model equals the unpruned one with the chosen channels silenced.

    If Torch-Pruning mapped an index wrongly anywhere (through chunk, split, concat, residuals,
    the head), the pruned model would drop a live channel and the outputs would differ.
    """
    import toolchain.models.pruning as pruning

    model, task = build(yaml_name)
    for m in model.modules():  # trained-like BN statistics, so silenced vs live channels differ visibly
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.5, 0.5)
    loaded = LoadedModel("m.pt", "ultralytics", model, {}, task, 3, model.names)
    captured = {}
    real = pruning.couple_groups

    def couple_and_silence(DG, importance, groups, pairs):
        chosen = real(DG, importance, groups, pairs)
        _zero_what_groups_remove(DG, chosen)
        captured["reference"] = copy.deepcopy(DG.model)
        return chosen

    monkeypatch.setattr(pruning, "couple_groups", couple_and_silence)
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        unsilenced = flat_tensors(inference_outputs(copy.deepcopy(model)(x)))
    outcome = prune_structured(loaded, PruneConfig(ratio=0.4, imgsz=IMGSZ), x)
    assert outcome.after.params < outcome.before.params
    with torch.no_grad():
        expected = flat_tensors(inference_outputs(captured["reference"](x)))
        got = flat_tensors(inference_outputs(outcome.model(x)))
    assert [t.shape for t in got] == [t.shape for t in expected]
    assert any(float((u - e).abs().max()) > 1e-3 * float(u.abs().max()) for u, e in zip(unsilenced, expected)), \
        "silencing the chosen channels did not change the outputs: the check would be vacuous"
    for e, g in zip(expected, got):
        assert float((e - g).abs().max()) <= 1e-4 * max(float(e.abs().max()), 1e-6)


def test_rtdetr_is_refused_naming_its_first_unprunable_module(tmp_path):
    from ultralytics import RTDETR

    from toolchain.models.checkpoint import save_model

    model = RTDETR(REFUSED["RT-DETR"]).model
    path = tmp_path / "rtdetr.pt"
    save_model(LoadedModel(str(path), "ultralytics", model, {}), model, path)
    with pytest.raises(UnsupportedModelError, match=r"contains AIFI \(layer \d+\), which edgeprune cannot prune"):
        load_model(path)


def test_a_torch_pruning_failure_names_the_layer(random_yolo, monkeypatch):
    """A crash inside Torch-Pruning becomes one sentence with the checkpoint, the class and the layer index."""
    import torch_pruning as tp

    loaded = load_model(random_yolo("yolov8n.yaml"))
    real_prune = tp.dependency.group.Group.prune

    def prune(group, *args, **kwargs):
        if group._DG._module2name[group[0].dep.target.module].startswith("model.4."):  # a C2f
            raise IndexError("index 384 is out of bounds for dimension 0 with size 256")
        return real_prune(group, *args, **kwargs)

    monkeypatch.setattr(tp.dependency.group.Group, "prune", prune)
    with pytest.raises(PruningError) as info:
        prune_structured(loaded, PruneConfig(ratio=0.4, imgsz=IMGSZ), torch.rand(1, 3, IMGSZ, IMGSZ))
    message = str(info.value)
    assert loaded.path in message and "IndexError" in message
    assert "C2f (layer 4, " in message, message
    assert "\n" not in message


@pytest.mark.slow
@pytest.mark.parametrize("global_pruning", [False, pytest.param(True, marks=pytest.mark.full)], ids=["local", "global"])
def test_p6_models_with_c2_blocks_prune_at_1280_and_reload_stock(random_yolo, reload_without_edgeprune, tmp_path,
                                                                  global_pruning):
    """yolov8n-p6's head is made of ``C2`` blocks (chunk, the first half through the bottlenecks): they are split,
    pruned with equal halves and put back, at the P6 models' own size."""
    src = random_yolo("yolov8n-p6.yaml")
    out = tmp_path / "p6.pt"
    report = prune_file(str(src), str(out), PruneConfig(ratio=0.4, global_pruning=global_pruning, imgsz=1280))
    assert report.split_blocks >= 4 and report.input_shape == (1, 3, 1280, 1280)
    assert report.after.macs < 0.6 * report.before.macs
    reloaded = reload_without_edgeprune(out, 1280)
    assert reloaded["results"] == 1
    assert reloaded["shapes"] == _contract(src, 1280)
