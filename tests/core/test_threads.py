"""Ultralytics calls keep every CPU core (its select_device would leave cores - 1)."""

from __future__ import annotations

import pytest
import torch

from toolchain.core.device import cpu_threads, open_yolo


@pytest.mark.skipif(cpu_threads() < 2, reason="with one core there is nothing to lose")
def test_validation_and_prediction_run_on_every_core(synth_data, tmp_path):
    from ultralytics import YOLO

    torch.set_num_threads(cpu_threads())
    YOLO("yolov8n.yaml").predict(torch.zeros(1, 3, 64, 64), verbose=False)
    assert torch.get_num_threads() == cpu_threads() - 1  # what plain Ultralytics does, and why open_yolo exists

    seen = []
    yolo = open_yolo("yolov8n.yaml")
    yolo.add_callback("on_val_batch_start", lambda validator: seen.append(torch.get_num_threads()))
    yolo.predict(torch.zeros(1, 3, 64, 64), verbose=False)
    assert torch.get_num_threads() == cpu_threads()
    yolo.val(data=str(synth_data), imgsz=64, batch=50, device="cpu", plots=False, verbose=False, workers=0,
             project=str(tmp_path), name="val")
    assert seen and set(seen) == {cpu_threads()}
