"""C2f-family blocks split for pruning are exactly equivalent, and merge back to stock classes."""

from __future__ import annotations

import copy

import pytest
import torch

from toolchain.blocks import SplitC2f, restore_stock_blocks, split_chunk_blocks
from toolchain.pruning import max_abs_diff


@pytest.mark.parametrize("yaml_name, expected_blocks", [("yolov8n.yaml", 8), ("yolo11n.yaml", 8)])
def test_split_is_equivalent_and_restores_stock(yaml_name, expected_blocks):
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO(yaml_name).model.float().eval()
    for m in model.modules():  # non-trivial BN statistics, so a wrong slice would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    reference = copy.deepcopy(model)
    x = torch.randn(1, 3, 128, 160)
    assert split_chunk_blocks(model) == expected_blocks
    assert sum(isinstance(m, SplitC2f) for m in model.modules()) == expected_blocks
    assert max_abs_diff(reference, model, x) <= 1e-5
    restored, kept = restore_stock_blocks(model)
    assert (restored, kept) == (expected_blocks, 0)
    assert not any(isinstance(m, SplitC2f) for m in model.modules())
    assert [type(m) for m in model.modules()] == [type(m) for m in reference.modules()]
    assert max_abs_diff(reference, model, x) <= 1e-5


def test_unequal_halves_stay_split():
    from ultralytics.nn.modules.block import C2f

    import torch_pruning as tp

    block = SplitC2f(C2f(16, 16, n=1).eval())
    tp.prune_conv_out_channels(block.cv1a.conv, idxs=[0, 1])  # first half loses 2 channels, second none
    tp.prune_batchnorm_out_channels(block.cv1a.bn, idxs=[0, 1])
    tp.prune_conv_in_channels(block.cv2.conv, idxs=[0, 1])
    block(torch.randn(1, 16, 8, 8))  # still a working block
    assert block.to_stock() is None
