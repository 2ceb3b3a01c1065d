"""The synthetic data set: deterministic, valid YOLO labels, honest errors."""

from __future__ import annotations

import hashlib

import cv2
import pytest
import yaml

from toolchain.core.errors import EdgepruneError
from toolchain.core.synth import SHAPE_NAMES, SynthConfig, generate


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "data.yaml"):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    cfg = SynthConfig(train=12, val=4, imgsz=128, classes=4, seed=7)
    a = generate(tmp_path / "a", cfg)
    b = generate(tmp_path / "b", cfg)
    generate(tmp_path / "c", SynthConfig(train=12, val=4, imgsz=128, classes=4, seed=8))
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    assert a.train_objects == b.train_objects > 0


def test_labels_are_valid_yolo_boxes_and_data_yaml_is_usable(tmp_path):
    result = generate(tmp_path / "d", SynthConfig(train=20, val=5, imgsz=160, classes=6, seed=1))
    data = yaml.safe_load((tmp_path / "d" / "data.yaml").read_text())
    assert data["nc"] == 6 and list(data["names"].values()) == list(SHAPE_NAMES)
    seen_classes = set()
    for label_file in (tmp_path / "d" / "labels" / "train").glob("*.txt"):
        image = cv2.imread(str(label_file.parent.parent.parent / "images" / "train" / f"{label_file.stem}.jpg"))
        assert image.shape == (160, 160, 3)
        for line in label_file.read_text().splitlines():
            cls, cx, cy, w, h = line.split()
            seen_classes.add(int(cls))
            cx, cy, w, h = map(float, (cx, cy, w, h))
            assert 0 < w <= 1 and 0 < h <= 1
            assert 0 <= cx - w / 2 + 1e-6 and cx + w / 2 <= 1 + 1e-6
            assert 0 <= cy - h / 2 + 1e-6 and cy + h / 2 <= 1 + 1e-6
    assert len(seen_classes) >= 4
    assert result.train_objects == sum(
        len(f.read_text().splitlines()) for f in (tmp_path / "d" / "labels" / "train").glob("*.txt")
    )


def test_refuses_non_empty_output_and_bad_config(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("user data")
    with pytest.raises(EdgepruneError, match="not empty"):
        generate(tmp_path / "full", SynthConfig(train=2, val=1))
    assert (tmp_path / "full" / "keep.txt").read_text() == "user data"
    with pytest.raises(EdgepruneError, match="--classes"):
        generate(tmp_path / "x", SynthConfig(classes=9))
