"""The Darknet trainer's pieces against Darknet's rules: anchor assignment, ignore_thresh, iou_thresh,
the decode the loss optimises (same as inference) and the [net] learning-rate policy."""

from __future__ import annotations

import pytest
import torch

from cfg_codegen.build import build_model
from cfg_codegen.parser import parse_cfg_text
from toolchain.models.darknet_train.loss import DarknetYoloLoss, decode_grid
from toolchain.models.darknet_train.schedule import DarknetSchedule


def _net(anchors: str = "8,8, 32,32", extra: str = "", net_extra: str = "", yolo_extra: str = ""):
    """64x64 input, one head on an 8x8 grid (stride 8), two anchors, one class."""
    return parse_cfg_text(f"""[net]
width=64
height=64
channels=3
{net_extra}
[convolutional]
filters=12
size=1
stride=8
pad=0
activation={"logistic" if "new_coords" in yolo_extra else "linear"}
[yolo]
mask=0,1
anchors={anchors}
classes=1
num=2
ignore_thresh=0.5
{yolo_extra}
{extra}
""", "test.cfg")


def _obj_grad(network, box_xywh_px):
    """Gradient of the loss on every objectness logit, for zero maps and one ground-truth box."""
    maps = torch.zeros(1, 12, 8, 8, requires_grad=True)
    x, y, w, h = box_xywh_px
    targets = {"batch_idx": torch.zeros(1), "cls": torch.zeros(1, 1),
               "bboxes": torch.tensor([[x / 64, y / 64, w / 64, h / 64]])}
    loss, _ = DarknetYoloLoss(network)((maps,), targets, (64, 64))
    loss.backward()
    return maps.grad.view(2, 6, 8, 8)[:, 4]  # (anchor slot, y, x)


def test_box_goes_to_best_anchor_in_its_centre_cell_and_overlapping_predictions_are_ignored():
    grad = _obj_grad(_net(), (20, 44, 30, 30))  # centre in cell x=2, y=5; 30x30 fits anchor 32x32 (slot 1)
    assert grad[1, 5, 2] < 0  # the assigned prediction is pushed towards objectness 1
    # Slot 1 one cell to the right predicts a 32x32 box centred at (28, 44): IoU 0.56 > ignore_thresh 0.5
    assert grad[1, 5, 3] == 0
    assert grad[1, 5, 4] > 0  # two cells away: IoU 0.31, a negative pushed towards 0
    assert grad[0, 5, 2] > 0  # the 8x8 anchor at the same cell overlaps by 0.07: negative too
    assert (grad < 0).sum() == 1


def test_iou_thresh_assigns_every_anchor_that_fits_well_enough():
    box = (20, 44, 30, 30)
    plain = _obj_grad(_net("24,24, 32,32"), box)
    assert plain[0, 5, 2] == 0  # 24x24 is not the best anchor and overlaps 0.64 > ignore: ignored
    v4 = _obj_grad(_net("24,24, 32,32", "iou_thresh=0.5"), box)
    assert v4[0, 5, 2] < 0 and v4[1, 5, 2] < 0  # YOLOv4: both anchors with shape IoU > 0.5 predict it


@pytest.mark.parametrize("yolo_extra", ["scale_x_y=1.2", "scale_x_y=2.0\nnew_coords=1"])
def test_the_loss_decodes_boxes_as_inference_does(yolo_extra):
    network = _net(yolo_extra=yolo_extra)
    yolo = network.yolo_layers[0]
    model = build_model(network).eval()
    head = getattr(model, f"l{yolo.index}")
    raw = torch.randn(2, 12, 8, 8) * 0.5
    if yolo.new_coords:
        raw = torch.sigmoid(raw)
    rows = head.decode(raw, 64, 64).view(2, 8, 8, 2, 6)  # (b, y, x, anchor, row) in fractions of the input
    p = raw.view(2, 2, 6, 8, 8).permute(0, 1, 3, 4, 2)
    anchors = torch.tensor(yolo.head_anchors) / 8
    boxes, obj, _, logits = decode_grid(p, yolo, anchors)
    ours = boxes.permute(0, 2, 3, 1, 4) / 8  # grid cells -> fractions of the 64 px input
    torch.testing.assert_close(ours, rows[..., :4], rtol=1e-5, atol=1e-6)
    prob = torch.sigmoid(obj) if logits else obj
    torch.testing.assert_close(prob.permute(0, 2, 3, 1), rows[..., 4], rtol=1e-5, atol=1e-6)


def test_rate_burns_in_then_follows_the_compressed_steps():
    network = _net(net_extra="learning_rate=0.01\nburn_in=1000\nmax_batches=6000\npolicy=steps\n"
                             "steps=4800,5400\nscales=.1,.1")
    schedule = DarknetSchedule.from_network(network)
    total = 1000
    assert schedule.warmup_iterations(total) == 100  # burn_in 1000 capped at a tenth of the run
    assert schedule.rate(50, total) == pytest.approx(0.01 * 0.5 ** 4)  # Darknet's (i / burn_in) ** 4 rise
    assert schedule.rate(500, total) == pytest.approx(0.01)
    assert schedule.rate(801, total) == pytest.approx(0.001)  # step 4800 of 6000 = 80 % of the run
    assert schedule.rate(901, total) == pytest.approx(0.0001)
    assert schedule.rate(50, total, burn_in=0) == pytest.approx(0.01)


def test_a_steps_policy_without_matching_scales_names_the_line():
    from cfg_codegen.errors import CfgError

    network = _net(net_extra="policy=steps\nsteps=100,200\nscales=.1")
    with pytest.raises(CfgError, match=r"test.cfg:\d+: \[net\] key 'scales'.*2 steps and 1 scales"):
        DarknetSchedule.from_network(network)
