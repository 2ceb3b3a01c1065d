"""Chunk blocks split for pruning are exactly equivalent, and merge back to stock classes."""

from __future__ import annotations

import copy

import pytest
import torch

from toolchain.models.blocks import SplitChunk, chunk_couplings, restore_stock_blocks, split_chunk_blocks
from toolchain.core.errors import PruningError
from toolchain.models.pruning import relative_output_diff


def _with_trained_statistics(model):
    """Non-trivial BN statistics, so a wrong slice would show in the outputs."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("yaml_name, expected_blocks", [("yolov8n.yaml", 8), ("yolo11n.yaml", 8), ("yolov9t.yaml", 8)])
def test_split_is_equivalent_and_restores_stock(yaml_name, expected_blocks):
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = _with_trained_statistics(YOLO(yaml_name).model.float().eval())
    reference = copy.deepcopy(model)
    x = torch.randn(1, 3, 128, 160)
    assert split_chunk_blocks(model) == expected_blocks
    assert sum(isinstance(m, SplitChunk) for m in model.modules()) == expected_blocks
    assert relative_output_diff(reference, model, x) <= 1e-5
    assert restore_stock_blocks(model) == expected_blocks
    assert not any(isinstance(m, SplitChunk) for m in model.modules())
    assert [type(m) for m in model.modules()] == [type(m) for m in reference.modules()]
    assert list(model.state_dict()) == list(reference.state_dict())  # same names, same order as a fresh build
    assert relative_output_diff(reference, model, x) <= 1e-5


class _Rounded(torch.nn.Module):
    """The model with float32-rounding-sized noise (2**-20 relative) on every output tensor."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        from toolchain.models.contract import flat_tensors

        out = self.model(x)
        g = torch.Generator().manual_seed(0)
        for t in flat_tensors(out):
            t.mul_(1 + (torch.rand(t.shape, generator=g) - 0.5) * 2**-19)
        return out


def test_trained_model_at_640_passes_and_a_wrong_rewrite_fails(baseline_pt):
    """Real activation scale (trained weights, boxes in pixels at 640): rounding passes, mistakes do not."""
    from toolchain.models.loading import load_model
    from toolchain.models.pruning import EQUIVALENCE_RTOL, max_abs_diff

    model = load_model(baseline_pt).model
    reference = copy.deepcopy(model)
    x = torch.rand(1, 3, 640, 640)
    split_chunk_blocks(model)
    assert relative_output_diff(reference, model, x) <= EQUIVALENCE_RTOL
    # rounding-sized differences are hundreds of times an absolute 1e-5 at pixel scale, yet pass
    assert max_abs_diff(reference, _Rounded(model), x) > 1e-4
    assert relative_output_diff(reference, _Rounded(model), x) <= EQUIVALENCE_RTOL
    blocks = [m for m in model.modules() if isinstance(m, SplitChunk)]
    blocks[0].cv1a, blocks[0].cv1b = blocks[0].cv1b, blocks[0].cv1a  # halves swapped
    assert relative_output_diff(reference, model, x) > 100 * EQUIVALENCE_RTOL
    blocks[0].cv1a, blocks[0].cv1b = blocks[0].cv1b, blocks[0].cv1a
    blocks[-1].cv1b.conv.weight.data[0] *= 1.01  # one channel's weights off by 1% in the last block
    assert relative_output_diff(reference, model, x) > EQUIVALENCE_RTOL


def test_unequal_halves_are_refused_not_saved():
    from ultralytics.nn.modules.block import C2f

    import torch_pruning as tp

    block = SplitChunk(C2f(16, 16, n=1).eval())
    tp.prune_conv_out_channels(block.cv1a.conv, idxs=[0, 1])  # first half loses 2 channels, second none
    tp.prune_batchnorm_out_channels(block.cv1a.bn, idxs=[0, 1])
    tp.prune_conv_in_channels(block.block.cv2.conv, idxs=[0, 1])
    block(torch.randn(1, 16, 8, 8))  # still a working block
    with pytest.raises(PruningError, match="halves were pruned to 6 and 8 channels"):
        block.to_stock()


def test_couplings_cover_split_blocks_and_adown():
    from ultralytics import YOLO

    model = YOLO("yolov9c.yaml").model.float().eval()  # v9t downsamples with AConv, v9c with ADown
    blocks = split_chunk_blocks(model)
    pairs = chunk_couplings(model)
    adowns = sum(type(m).__name__ == "ADown" for m in model.modules())
    assert blocks > 0 and adowns > 0
    assert len(pairs) == blocks + adowns
    assert {(a.side, b.side) for a, b in pairs} == {("out", "out"), ("in", "in")}
