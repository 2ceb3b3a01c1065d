"""Every family, from a trained checkpoint: prunes at its own size, reloads stock, deploys with fidelity.

The checkpoints are short runs on the synthetic set (``make family-checkpoints``, cached under
``.cache/family-checkpoints``; trained here when absent), so weights, BN statistics and
activations have trained magnitudes and the model really detects — unlike the untrained
yaml builds of ``test_families.py``. ``make test-full`` only: training all of them takes
about 40 minutes on 2 cores the first time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from targets.base import ExportConfig
from toolchain.pipelines.deploy import deploy
from toolchain.models.contract import contract_shapes
from toolchain.models.loading import load_model
from toolchain.models.pruning import PruneConfig
from toolchain.models.prune_job import prune_file
from toolchain.models.zoo import FAMILIES, TRAIN_IMGSZ, train_checkpoint

FAMILY_CKPTS = Path(__file__).resolve().parents[2] / ".cache" / "family-checkpoints"
MIN_TRAINED_MAP50 = 0.05  # above what an untrained model scores (0.000) on this set


@pytest.fixture(scope="module")
def trained(synth_data):
    return lambda family: train_checkpoint(family, str(synth_data), FAMILY_CKPTS)


@pytest.mark.full
@pytest.mark.parametrize("family", list(FAMILIES))
def test_trained_checkpoint_prunes_at_its_size_reloads_stock_and_deploys(trained, synth_data, reload_without_edgeprune,
                                                                        tmp_path, family):
    path, card = trained(family)
    assert card["map50"] >= MIN_TRAINED_MAP50, f"{family} checkpoint is not trained ({card})"
    contract = contract_shapes(load_model(path).model, torch.zeros(1, 3, TRAIN_IMGSZ, TRAIN_IMGSZ))
    for global_pruning in (False, True):
        out = tmp_path / f"pruned-{'global' if global_pruning else 'local'}.pt"
        # imgsz left unset: the checkpoint's own training size is used (its train_args say 256)
        report = prune_file(str(path), str(out), PruneConfig(ratio=0.4, global_pruning=global_pruning))
        assert tuple(report.input_shape[-2:]) == (TRAIN_IMGSZ, TRAIN_IMGSZ)
        assert report.after.macs < 0.85 * report.before.macs, f"{family}: MACs barely cut"
        reloaded = reload_without_edgeprune(out, TRAIN_IMGSZ)
        assert reloaded["results"] == 1
        assert [tuple(s) for s in reloaded["shapes"]] == contract

    # trained activation magnitudes through the exporter: the pruned model's raw outputs match
    pruned = deploy("onnx", str(tmp_path / "pruned-local.pt"), tmp_path / "onnx-pruned",
                    ExportConfig(precision="fp32"), evaluate=False)
    assert pruned.record["fidelity"]["max_rel_diff"] <= 1e-4, pruned.record["fidelity"]
    # and the trained checkpoint's artifact detects what PyTorch detects through the same pipeline (a pruned
    # model without fine-tuning scores ~0, which would make this comparison vacuous)
    result = deploy("onnx", str(path), tmp_path / "onnx", ExportConfig(precision="fp32", data=str(synth_data)))
    record = json.loads(Path(result.deploy_json).read_text())
    assert record["fidelity"]["max_rel_diff"] <= 1e-4, record["fidelity"]
    accuracy = record["accuracy"]
    print(f"\n{family}: trained mAP50 {card['map50']:.3f}; its ONNX artifact {accuracy['artifact']['map50']:.3f} vs "
          f"PyTorch {accuracy['torch_fp32']['map50']:.3f} (edgeprune's pipeline); pruned 0.4 fidelity "
          f"{pruned.record['fidelity']['max_rel_diff']:.1e}")
    assert accuracy["torch_fp32"]["map50"] >= MIN_TRAINED_MAP50
    assert abs(accuracy["map50_drop"]) <= 0.01, accuracy
