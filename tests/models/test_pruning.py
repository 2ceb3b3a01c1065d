"""Structured pruning really removes channels, everywhere it should and nowhere it must not."""

from __future__ import annotations

import pickletools
import subprocess
import sys
import zipfile

import pytest
import torch
from torch import nn

from toolchain.core.errors import PruningError
from toolchain.models.loading import load_model
from toolchain.models.contract import protected_layers
from toolchain.models.pruning import PruneConfig, prune_structured
from toolchain.models.prune_job import prune_file


def _pickled_globals(path) -> set[str]:
    """Module paths of every class a torch.save zip file references."""
    found = set()
    with zipfile.ZipFile(path) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    ops = list(pickletools.genops(data))
    for i, (op, arg, _) in enumerate(ops):
        if op.name == "GLOBAL":
            found.add(arg.split(" ")[0])
        elif op.name == "STACK_GLOBAL":
            strings = [a for o, a, _ in ops[max(0, i - 4):i] if o.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE")]
            if len(strings) >= 2:
                found.add(strings[-2])
    return found


def test_half_ratio_cuts_macs_and_prunes_head_inner_convs(baseline_pt, pruned50):
    out, report = pruned50
    assert 1 - report.after.macs / report.before.macs >= 0.45
    assert report.after.params < 0.5 * report.before.params
    assert report.after.file_bytes < report.before.file_bytes
    assert report.stock_blocks

    original = load_model(baseline_pt).model
    pruned = load_model(out).model
    head_o, head_p = original.model[-1], pruned.model[-1]
    for branch_o, branch_p in zip(list(head_o.cv2) + list(head_o.cv3), list(head_p.cv2) + list(head_p.cv3)):
        # inner head convs lose channels ...
        assert branch_p[0].conv.out_channels < branch_o[0].conv.out_channels
        assert branch_p[1].conv.out_channels < branch_o[1].conv.out_channels
        # ... the prediction convs keep their outputs (4*reg_max box bins, nc class scores)
        assert branch_p[2].out_channels == branch_o[2].out_channels
    assert head_p.dfl.conv.weight.shape == head_o.dfl.conv.weight.shape


def test_pruned_checkpoint_references_only_stock_classes(pruned50):
    out, _ = pruned50
    modules = _pickled_globals(out)
    assert any(m.startswith("ultralytics.nn.modules") for m in modules)
    assert not any(m.startswith(("toolchain", "__main__")) for m in modules), modules
    # plain Ultralytics in a fresh interpreter, without edgeprune importable, runs it
    code = (
        "import sys; sys.modules['toolchain'] = None;"  # any import of edgeprune's package now fails
        "from ultralytics import YOLO; import torch;"
        f"m = YOLO(r'{out}'); r = m.predict(torch.zeros(1, 3, 256, 256), verbose=False); print(len(r))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("1")


def test_input_model_is_left_untouched(baseline_pt, pruned50):
    from toolchain.core.fileio import sha256_of

    card_sha = __import__("json").loads(baseline_pt.with_suffix(".json").read_text())["sha256"]
    assert sha256_of(baseline_pt) == card_sha


@pytest.mark.parametrize("method", ["l1", "l2", "lamp", "bn", "random"])
def test_every_method_prunes_and_keeps_outputs(random_yolo, method):
    loaded = load_model(random_yolo("yolov8n.yaml"))
    x = torch.randn(1, 3, 128, 128)
    outcome = prune_structured(loaded, PruneConfig(ratio=0.4, method=method, imgsz=128), x)
    assert outcome.after.macs < 0.75 * outcome.before.macs
    with torch.no_grad():
        y_ref, y = loaded.model(x)[0], outcome.model(x)[0]
    assert y.shape == y_ref.shape  # same boxes x classes layout


def test_taylor_uses_real_data(random_yolo, synth_data):
    loaded = load_model(random_yolo("yolov8n.yaml"))
    cfg = PruneConfig(ratio=0.3, method="taylor", imgsz=128, data=str(synth_data), calib_batches=1)
    outcome = prune_structured(loaded, cfg, torch.randn(1, 3, 128, 128))
    assert outcome.after.macs < outcome.before.macs
    with pytest.raises(PruningError, match="needs an Ultralytics model and --data"):
        prune_structured(loaded, PruneConfig(ratio=0.3, method="taylor", imgsz=128), torch.randn(1, 3, 128, 128))


def test_iterative_and_global_pruning(random_yolo, tmp_path):
    src = random_yolo("yolov8n.yaml")
    steps = prune_file(str(src), str(tmp_path / "it.pt"), PruneConfig(ratio=0.5, steps=3, imgsz=128))
    one = prune_file(str(src), str(tmp_path / "one.pt"), PruneConfig(ratio=0.5, imgsz=128))
    assert steps.after.params == one.after.params  # same final widths, reached in 3 steps
    glob = prune_file(str(src), str(tmp_path / "g.pt"), PruneConfig(ratio=0.5, global_pruning=True, imgsz=128))
    assert glob.after.macs < glob.before.macs
    from ultralytics import YOLO

    for name in ("it.pt", "g.pt"):  # local, iterative and global pruning all end in stock blocks
        assert YOLO(str(tmp_path / name)).predict(torch.zeros(1, 3, 128, 128), verbose=False)


@pytest.mark.parametrize("global_pruning", [False, True])
def test_a_higher_ratio_never_keeps_more_and_no_layer_is_skipped(random_yolo, global_pruning):
    """Torch-Pruning rounds the channels a layer keeps down to the multiple; when that left none it skipped
    the layer whole, so local 0.9 kept 434 M MACs of a yolov8n against 74 M at 0.7. Each layer keeps one
    multiple (8) instead, its most important channels."""
    loaded = load_model(random_yolo("yolov8n.yaml"))
    x = torch.zeros(1, 3, 128, 128)
    widths = {n: m.out_channels for n, m in loaded.model.named_modules() if isinstance(m, nn.Conv2d)}
    protected = {id(m) for m in protected_layers(loaded.model)}
    prunable = {n for n, m in loaded.model.named_modules() if isinstance(m, nn.Conv2d) and id(m) not in protected
                and m.out_channels > 8}
    macs = []
    for ratio in (0.7, 0.9):
        outcome = prune_structured(loaded, PruneConfig(ratio=ratio, method="l1", global_pruning=global_pruning,
                                                       imgsz=128), x)
        macs.append(outcome.after.macs)
        after = {n: m.out_channels for n, m in outcome.model.named_modules() if isinstance(m, nn.Conv2d)}
        assert all(after[n] >= 8 and after[n] % 8 == 0 for n in prunable), after
        if ratio == 0.9 and not global_pruning:
            assert [n for n in prunable if after[n] == widths[n]] == []  # every layer lost channels
    assert macs[0] > macs[1], macs


@pytest.mark.parametrize("ratio", [0.1, 0.7])
def test_each_layer_keeps_the_multiple_nearest_the_ratio(random_yolo, ratio):
    """Rounding down made a small ratio a large one: at 0.1 a 16-channel layer kept 8, a 32-channel one 24,
    and "0.1" removed 40 % of yolov8n's MACs. Each layer keeps the multiple of 8 nearest width × (1 − ratio),
    so no layer is more than half a multiple off (a C2f's split cv1 rounds each of its two halves)."""
    from ultralytics.nn.modules.block import C2f

    loaded = load_model(random_yolo("yolov8n.yaml"))
    widths = {n: m.out_channels for n, m in loaded.model.named_modules() if isinstance(m, nn.Conv2d)}
    split = {f"{n}.cv1.conv" for n, m in loaded.model.named_modules() if isinstance(m, C2f)}
    protected = {id(m) for m in protected_layers(loaded.model)}
    prunable = {n for n, m in loaded.model.named_modules() if isinstance(m, nn.Conv2d) and id(m) not in protected}
    outcome = prune_structured(loaded, PruneConfig(ratio=ratio, method="l1", imgsz=128), torch.zeros(1, 3, 128, 128))
    after = {n: m.out_channels for n, m in outcome.model.named_modules() if isinstance(m, nn.Conv2d)}
    off = {n: (widths[n], after[n]) for n in prunable
           if abs(after[n] - widths[n] * (1 - ratio)) > 4 * (2 if n in split else 1) + 1}
    assert off == {}, off  # (width, kept) of each layer further than half a multiple from what the ratio asks
    channel_share = (1 - ratio) ** 2  # a conv's MACs scale with its in- and out-channels
    assert outcome.after.macs / outcome.before.macs == pytest.approx(channel_share, abs=0.1)


def _head_widths(model: nn.Module) -> dict[str, int]:
    """Out channels of the Detect head's inner convs (its cv2/cv3 branches, not the prediction convs)."""
    protected = {id(m) for m in protected_layers(model)}
    return {n: m.out_channels for n, m in model.named_modules()
            if n.startswith("model.22.") and isinstance(m, nn.Conv2d) and id(m) not in protected}


@pytest.mark.parametrize("global_pruning", [False, True])
def test_head_ratio_sets_the_heads_own_share(random_yolo, global_pruning):
    """The head's inner convs lose --head-ratio (0: none) while the body loses --ratio; without it they lose --ratio."""
    loaded = load_model(random_yolo("yolov8n.yaml"))
    x = torch.zeros(1, 3, 128, 128)
    stock = _head_widths(loaded.model)
    assert set(stock.values()) == {64}, stock
    kept = {}
    for head_ratio in (None, 0.0, 0.5):
        cfg = PruneConfig(ratio=0.7, method="l1", global_pruning=global_pruning, imgsz=128, head_ratio=head_ratio)
        outcome = prune_structured(loaded, cfg, x)
        kept[head_ratio] = (_head_widths(outcome.model), outcome.after.macs)
        body = {n: m.out_channels for n, m in outcome.model.named_modules()
                if n.startswith("model.2.") and isinstance(m, nn.Conv2d)}
        assert sum(body.values()) < 0.6 * sum(m.out_channels for n, m in loaded.model.named_modules()
                                              if n.startswith("model.2.") and isinstance(m, nn.Conv2d))
    assert kept[0.0][0] == stock  # the head keeps its width
    if global_pruning:  # the head is ranked on its own: half its channels, wherever they are weakest
        half = kept[0.5][0].values()
        assert all(w % 8 == 0 for w in half) and 0.4 <= sum(half) / sum(stock.values()) <= 0.6, kept[0.5][0]
    else:
        assert set(kept[0.5][0].values()) == {32}  # 64 * (1 - 0.5) in every branch
        assert set(kept[None][0].values()) == {16}  # the body's 0.7: 64 * 0.3 = 19, rounded down to 8s
    assert kept[None][1] < kept[0.5][1] < kept[0.0][1]


def test_head_ratio_is_refused_where_it_cannot_apply(tmp_path, random_yolo):
    import edgeprune
    from toolchain.core.errors import EdgepruneError

    with pytest.raises(EdgepruneError, match="--head-ratio"):
        edgeprune.prune(str(random_yolo("yolov8n.yaml")), str(tmp_path / "p.pt"), 0.5, unstructured=True,
                        head_ratio=0.2)
    loaded = load_model(random_yolo("yolov8n.yaml"))
    with pytest.raises(PruningError, match="head's pruning ratio"):
        prune_structured(loaded, PruneConfig(ratio=0.5, imgsz=128, head_ratio=1.0), torch.zeros(1, 3, 128, 128))


@pytest.mark.parametrize("yaml_name", ["yolov5nu.yaml", "yolo11n.yaml", "yolov8n-pose.yaml", "yolo11n-pose.yaml"])
def test_other_families_prune_reload_and_run(random_yolo, tmp_path, yaml_name):
    from ultralytics import YOLO

    src = random_yolo(yaml_name)
    out = tmp_path / "p.pt"
    report = prune_file(str(src), str(out), PruneConfig(ratio=0.5, imgsz=128))
    assert 1 - report.after.macs / report.before.macs >= 0.4
    assert report.stock_blocks
    model = YOLO(str(out))
    result = model.predict(torch.zeros(1, 3, 128, 128), verbose=False)
    assert len(result) == 1
    protected = protected_layers(load_model(out).model)
    original = {id(m): m.out_channels for m in protected_layers(load_model(src).model)}
    assert sorted(m.out_channels for m in protected) == sorted(original.values())


class TinyClassifier(nn.Module):
    """A plain module, as a user would torch.save it."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(self.features(x))


def test_plain_module_keeps_its_output_size(tmp_path):
    import torchvision

    path = tmp_path / "resnet.pt"
    torch.save(torchvision.models.resnet18(num_classes=7), path)
    report = prune_file(str(path), str(tmp_path / "r.pt"), PruneConfig(ratio=0.5), input_shape=(1, 3, 64, 64))
    assert report.after.params < 0.4 * report.before.params
    pruned = torch.load(tmp_path / "r.pt", weights_only=False)
    assert pruned(torch.randn(2, 3, 64, 64)).shape == (2, 7)
    assert report.protected_layers == ["fc"]
