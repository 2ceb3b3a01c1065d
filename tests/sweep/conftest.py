"""Fixtures of the sweep tests: one small synthetic set (same distribution as the baseline's)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_data(session_tmp):
    """64 train / 16 val images, 256 px, 3 classes: enough for 1-2 epoch runs and quick validation."""
    from toolchain.synth import SynthConfig, generate

    root = session_tmp / "small-synth"
    generate(root, SynthConfig(train=64, val=16, imgsz=256))
    return root / "data.yaml"
