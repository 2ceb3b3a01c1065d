"""cfg2py: the generated model.py is readable, imports only torch, runs alone and matches OpenCV."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

import numpy as np
import pytest
from darknet_testlib import cfg_path, opencv_outputs, random_image, rel_err, resized_copy, rows_err

from cfg_codegen.codegen import generate_source
from cfg_codegen.parser import parse_cfg

# Runs a generated model.py with edgeprune made unimportable, so only torch can be used.
RUNNER = """
import sys, runpy
import numpy as np, torch
sys.modules["cfg_codegen"] = sys.modules["toolchain"] = None
ns = runpy.run_path(sys.argv[1])
model = ns["Model"]()
if sys.argv[2] != "-":
    model.load_state_dict(torch.load(sys.argv[2]))
image = torch.from_numpy(np.load(sys.argv[3]))
with torch.no_grad():
    maps = model(image)
    rows = model.decode(maps, image.shape[2], image.shape[3])
np.savez(sys.argv[4], *[m.numpy() for m in maps], *[r.numpy() for r in rows])
"""


def forward_lines(source: str) -> list[str]:
    model = source.split("\nclass Model(nn.Module):", 1)[1]
    body = model.split("    def forward(self, x):\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in body.splitlines() if line.strip() and not line.strip().startswith("return")]


@pytest.mark.parametrize("name", ["yolov4-tiny.cfg", "yolov4-sam-mish-csp-reorg-bfm.cfg", "enet-coco.cfg"])
def test_one_commented_line_per_layer_and_only_torch(name):
    net = parse_cfg(cfg_path(name))
    source = generate_source(net)
    lines = forward_lines(source)
    indices = [int(re.search(r"# \[(\d+)\] ", line).group(1)) for line in lines]
    assert indices == list(range(len(net.layers)))  # one line per layer, in order
    for line, layer in zip(lines, net.layers, strict=True):
        assert f"# [{layer.index}] {layer.kind}" in line
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported == {"torch"}
    if name == "yolov4-tiny.cfg":
        assert "        x12 = self.l12(x11)  # [12] convolutional 64 3x3/1 leaky -> 64x52x52\n" in source
        assert "        x11 = x10.chunk(2, 1)[1]  # [11] route 10 groups=2 group_id=1 -> 64x52x52\n" in source


def test_generated_file_runs_alone_and_matches_opencv(tmp_path):
    """cfg2py --weights: the shipped model.py + state dict reproduce OpenCV's outputs, without edgeprune."""
    from cfg_codegen.build import random_model
    from cfg_codegen.weights import write_weights

    width, height = 160, 96
    cfg = resized_copy(cfg_path("yolov4-tiny.cfg"), width, height, tmp_path)
    net = parse_cfg(cfg)
    _, weights = random_model(net, height, width, seed=7)
    write_weights(tmp_path / "w.weights", net, weights)
    out = tmp_path / "gen" / "model.py"
    proc = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "cfg2py", cfg, "--out", out,
                           "--weights", tmp_path / "w.weights", "--bn-eps", "1e-6", "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "gen" / "model.pt").exists()
    image = random_image(3, height, width, seed=3)
    np.save(tmp_path / "image.npy", image)
    run = subprocess.run([sys.executable, "-c", RUNNER, out, tmp_path / "gen" / "model.pt", tmp_path / "image.npy",
                          tmp_path / "result.npz"], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    result = np.load(tmp_path / "result.npz")
    ours = [result[f"arr_{i}"] for i in range(len(result.files))]
    cv_maps, cv_rows = opencv_outputs(cfg, tmp_path / "w.weights", image, [y.index for y in net.yolo_layers])
    for mine, theirs in zip(ours[:2], cv_maps, strict=True):
        assert rel_err(mine, theirs) < 1e-4
    for mine, theirs in zip(ours[2:], cv_rows, strict=True):
        boxes, scores, _ = rows_err(mine, theirs)
        assert boxes < 1e-4 and scores < 1e-4


def test_generated_main_block_runs(tmp_path):
    net_text = cfg_path("yolov3-tiny.cfg").read_text()
    cfg = resized_copy(cfg_path("yolov3-tiny.cfg"), 96, 64, tmp_path, net_text)
    source = tmp_path / "model.py"
    source.write_text(generate_source(parse_cfg(cfg)))
    proc = subprocess.run([sys.executable, "-I", source], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["head map (1, 255, 2, 3) -> rows (18, 85)",
                                        "head map (1, 255, 4, 6) -> rows (72, 85)"]
