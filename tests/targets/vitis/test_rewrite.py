"""dpu-rewrite: DPU activations per instance, a plain Ultralytics checkpoint, and the fine-tune warning."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from targets.vitis.dpu_rewrite import HOST_DECODE_ATTR, LEAKY_SLOPE, dpu_rewrite_file, rewrite_module
from toolchain.core.errors import EdgepruneError
from toolchain.models.loading import load_model

IMPORTABLE = ("torch", "ultralytics", "collections", "builtins", "numpy", "_codecs", "copyreg", "__builtin__")


def _pickle_globals(path) -> set[str]:
    """Modules of every class/function the checkpoint's pickle references (recorded while torch.load runs)."""
    import pickle
    import types

    found: set[str] = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module, name):
            found.add(module)
            return super().find_class(module, name)

    torch.load(path, map_location="cpu", weights_only=False,
               pickle_module=types.SimpleNamespace(Unpickler=Recording, load=pickle.load, __name__="pickle"))
    return found


def test_every_silu_is_replaced_per_instance_and_the_class_default_is_untouched(baseline_pt):
    from ultralytics.nn.modules.conv import Conv
    from ultralytics.nn.tasks import DetectionModel

    model = load_model(baseline_pt).model
    replaced, slopes, marked = rewrite_module(model, "hardswish")
    assert replaced == {"SiLU": 57} and slopes == 0 and marked
    convs = [m for m in model.modules() if isinstance(m, Conv)]
    assert not any(isinstance(m, nn.SiLU) for m in model.modules())
    assert len({id(c.act) for c in convs}) == len(convs)  # one module each, not one shared default
    assert isinstance(Conv.default_act, nn.SiLU)
    fresh = DetectionModel("yolov8n.yaml", nc=3, verbose=False)  # models built later keep SiLU
    assert any(isinstance(m, nn.SiLU) for m in fresh.modules())


def test_output_is_a_normal_ultralytics_checkpoint_that_keeps_the_rewrite(rewritten_pt, synth_data):
    from ultralytics import YOLO

    modules = _pickle_globals(rewritten_pt)
    assert "torch.nn.modules.activation" in modules  # the recording really saw the classes
    assert {m.split(".")[0] for m in modules} <= set(IMPORTABLE), modules
    ckpt = torch.load(rewritten_pt, map_location="cpu", weights_only=False)
    assert ckpt["edgeprune"]["dpu_rewrite"]["replaced"] == {"SiLU": 57}
    yolo = YOLO(str(rewritten_pt))
    head = yolo.model.model[-1]
    assert getattr(head, HOST_DECODE_ATTR) is True
    assert sum(isinstance(m, nn.Hardswish) for m in yolo.model.modules()) == 57
    image = synth_data.parent / "images" / "val" / "val_00003.jpg"
    result = yolo.predict(str(image), imgsz=256, conf=0.001, verbose=False)[0]
    assert result.boxes.conf.max() <= 1.0  # Ultralytics inference still applies the sigmoid


def test_leaky_uses_the_dpu_slope_and_warns_to_fine_tune(baseline_pt, tmp_path):
    report = dpu_rewrite_file(baseline_pt, tmp_path / "leaky.pt", "leaky")
    model = load_model(tmp_path / "leaky.pt").model
    slopes = {m.negative_slope for m in model.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {LEAKY_SLOPE} and report.changed_function
    assert any("finetune" in w for w in report.warnings)
    again = dpu_rewrite_file(tmp_path / "leaky.pt", tmp_path / "again.pt", "leaky")  # nothing left to change
    assert not again.changed_function and again.warnings == [] and again.host_decode


def test_bad_requests_fail_in_one_sentence(baseline_pt):
    with pytest.raises(EdgepruneError, match="--act must be one of hardswish, leaky"):
        dpu_rewrite_file(baseline_pt, "x.pt", "relu")
    with pytest.raises(EdgepruneError, match="is the input file"):
        dpu_rewrite_file(baseline_pt, baseline_pt, "hardswish")


def test_prune_dpu_friendly_writes_a_rewritten_pruned_checkpoint(baseline_pt, tmp_path):
    from click.testing import CliRunner

    from toolchain.cli.main import cli

    out = tmp_path / "pruned-dpu.pt"
    run = CliRunner().invoke(cli, ["prune", str(baseline_pt), "--ratio", "0.3", "--unstructured", "--latency-iters",
                                   "0", "--out", str(out), "--dpu-friendly", "--dpu-act", "leaky", "--json"])
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert any(n.startswith("dpu-friendly: 57 SiLU -> leaky") for n in report["notes"])
    assert any("finetune" in n for n in report["notes"])
    ckpt = torch.load(out, map_location="cpu", weights_only=False)
    assert ckpt["edgeprune"]["mode"] == "unstructured"  # the prune note is kept beside the rewrite's
    assert ckpt["edgeprune"]["dpu_rewrite"]["act"] == "leaky"
    model = load_model(out).model
    assert not any(isinstance(m, nn.SiLU) for m in model.modules())
    zeros = sum(int((p == 0).sum()) for p in model.parameters()) / sum(p.numel() for p in model.parameters())
    assert zeros > 0.25  # still the pruned weights


def test_finetune_trains_the_rewritten_model_and_keeps_it_dpu_friendly(rewritten_pt, tmp_path):
    """One epoch on a tiny set: the point is that training runs and saves the rewrite, not accuracy."""
    from targets.vitis.dpu_rewrite import has_host_decode
    from targets.vitis.preflight import preflight
    from toolchain.core.synth import SynthConfig, generate
    from toolchain.models.training import TrainConfig, finetune

    generate(tmp_path / "tiny", SynthConfig(train=8, val=4, imgsz=64))
    result = finetune(str(rewritten_pt), str(tmp_path / "tiny" / "data.yaml"), tmp_path / "ft",
                      TrainConfig(epochs=1, imgsz=64, batch=8, workers=0))
    tuned = load_model(result.weights).model
    assert sum(isinstance(m, nn.Hardswish) for m in tuned.modules()) == 57 and has_host_decode(tuned)
    before = load_model(rewritten_pt).model.state_dict()
    assert any(not torch.equal(before[k].float(), v.float()) for k, v in tuned.state_dict().items()
               if k.endswith("conv.weight"))  # it really trained
    report = preflight(result.weights, "kv260", 64)
    assert report.fallbacks == [] and report.expected_dpu_subgraphs == 1
