"""``optimize`` chains its steps (each one's output is the next one's input), compares against the fastest
Ultralytics export, and resumes where an interrupted run stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolchain.core.errors import EdgepruneError
from toolchain.pipelines.optimize import OptimizeConfig, optimize


def test_options_are_checked_before_any_work(baseline_pt, micro_data, tmp_path):
    for bad, why in [({}, "exactly one"), ({"ratio": 0.5, "speedup": 2.0}, "exactly one"),
                     ({"ratio": 1.5}, "--ratio"), ({"ratio": 0.5, "budget_epochs": 1}, "--budget-epochs"),
                     ({"speedup": 2.0, "global_pruning": True}, "--global"),
                     ({"ratio": 0.5, "teacher": "x"}, "teacher"), ({"ratio": 0.5, "head_ratio": 1.0}, "--head-ratio")]:
        with pytest.raises(EdgepruneError, match=why):
            optimize(str(baseline_pt), tmp_path / "o", OptimizeConfig(data=str(micro_data), **bad), log=lambda _m: None)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_steps_chain_compare_with_the_best_ultralytics_export_and_resume(baseline_pt, micro_data, tmp_path):
    out = tmp_path / "run"
    cfg = OptimizeConfig(data=str(micro_data), ratio=0.5, budget_epochs=2, imgsz=64, workers=0, bench_seconds=0.5)
    said = []
    first = optimize(str(baseline_pt), out, cfg, log=said.append)
    steps = first.steps
    assert list(steps) == ["eval", "sparsify", "prune", "finetune", "deploy", "compare"]
    # each step takes the previous one's output
    assert steps["prune"]["model"] == steps["sparsify"]["weights"]
    assert steps["finetune"]["weights"].startswith(str(out / "finetune"))
    assert steps["finetune"]["teacher"] == str(baseline_pt)  # distilled from the unpruned input
    # the prune removed only channels sparsify had zeroed: the same mAP right after pruning
    assert steps["prune"]["after"]["macs"] < 0.6 * steps["prune"]["before"]["macs"]
    assert steps["prune"]["head_ratio"] == 0.3  # the recipe's own share for the head, recorded
    assert steps["prune"]["after"]["map50_95"] == pytest.approx(steps["sparsify"]["map50_95"], abs=0.01)
    # the base of every ratio is the fastest of Ultralytics' own exports, measured in the same run
    rows = steps["compare"]["rows"]
    references = [r for r in rows if r["is_reference"]]
    assert {r["label"].split()[-1] for r in references} == {"FP32", "FP16", "INT8"}
    fastest = max(references, key=lambda r: r["throughput_fps"])
    assert steps["compare"]["base"] == fastest["label"]
    assert [r["model"] for r in first.table if r["is_base"]] == [fastest["label"]]
    assert {r["model"] for r in first.table if not r["is_reference"]} == {"pruned FP32", "pruned INT8"}
    # the shipped IRs are static at the model's size, as Ultralytics' own (a dynamic one runs slower elsewhere)
    import openvino as ov
    for built in steps["deploy"]["artifacts"]:
        shape = ov.Core().read_model(next(Path(built["artifact"]).glob("*.xml"))).inputs[0].get_partial_shape()
        assert not shape.is_dynamic and list(shape.to_shape()) == [1, 3, 64, 64]
    assert json.loads((out / "optimize.json").read_text())["table"] == first.table
    # whether more epochs would help, read from the fine-tuning run's own results.csv (1 epoch: it cannot tell)
    assert "fine-tuning (1 of the 2 --budget-epochs): 1 training epoch(s): too few to tell" in " ".join(first.notes)

    # a rerun does no work; an interrupted run resumes at the step it was in
    said.clear()
    again = optimize(str(baseline_pt), out, cfg, log=said.append)
    assert all("done in an earlier run" in line for line in said) and again.table == first.table
    (out / "steps" / "compare.json").unlink()
    said.clear()
    resumed = optimize(str(baseline_pt), out, cfg, log=said.append)
    assert [line for line in said if "running" in line] == ["compare: running"]
    assert resumed.steps["finetune"] == steps["finetune"]


def test_the_depth_the_search_chose_is_sparsified_so_its_prune_keeps_the_map(baseline_pt, small_data, tmp_path,
                                                                             monkeypatch):
    """With ``--speedup`` the searched units are driven to identity in ``sparsify``: the prune that removes them
    (and the searched channels) scores what the sparsified model scored. The search itself (minutes of timing)
    is given as its finished step record; the run is stopped after the prune."""
    import torch

    import toolchain.pipelines.optimize as recipe
    from toolchain.models.contract import flat_tensors
    from toolchain.models.loading import load_model
    from toolchain.pipelines.latency_aware import SearchResult

    out = tmp_path / "run"
    (out / "steps").mkdir(parents=True)
    ratios = {str(block): 0.5 for block in range(22)}
    searched = SearchResult(target_ms=1.0, base={"speedup": 2.0}, block_ms={}, layer_ratios=ratios, round_to=8,
                            reached=True, depth=2, depth_choice="given by the test")
    (out / "steps" / "search.json").write_text(json.dumps(searched.to_json()))

    class Stop(Exception):
        pass

    def stop(*_args, **_kwargs):
        raise Stop

    monkeypatch.setattr(recipe, "finetune", stop)
    cfg = OptimizeConfig(data=str(small_data), speedup=2.0, budget_epochs=2, imgsz=128, workers=0)
    with pytest.raises(Stop):
        optimize(str(baseline_pt), out, cfg, log=lambda _m: None)
    sparse = json.loads((out / "steps" / "sparsify.json").read_text())
    pruned = json.loads((out / "steps" / "prune.json").read_text())
    assert len(sparse["units"]) == 2 and pruned["mode"] == "layers+structured"
    assert all(name in " ".join(pruned["notes"]) for name in sparse["units"])
    assert pruned["after"]["map50_95"] == pytest.approx(sparse["map50_95"], abs=0.01)
    # a few optimizer steps on the small set can end near mAP 0, where any prune "keeps" it: same predictions
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        before = flat_tensors(load_model(sparse["weights"]).model.float().eval()(x))[0]
        after = flat_tensors(load_model(out / "pruned.pt").model.float().eval()(x))[0]
    assert float((before - after).abs().max() / before.abs().max()) < 1e-4
