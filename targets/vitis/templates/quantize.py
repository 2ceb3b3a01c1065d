"""Quantize edgeprune's DPU graph with vai_q_pytorch; written by `edgeprune deploy vitis`.

Runs inside the Vitis AI Docker image (conda env vitis-ai-pytorch: Python 3.8, torch 1.13) with
this folder mounted at /workspace. Two runs, as the vai_q_pytorch README prescribes:

    python quantize.py --quant-mode calib [--fast-finetune]
        forward the calibration images through quantizer.quant_model (after AdaQuant-style
        fast fine-tuning when asked), then export_quant_config()
    python quantize.py --quant-mode test --deploy [--fast-finetune]
        batch 1: run the quantised model on eval/*.png (outputs saved for edgeprune's host-side
        mAP), then export_xmodel(deploy_check=False) -> quantize_result/DPUGraph_int.xmodel

Imports only what the image provides: torch, numpy, OpenCV, pytorch_nndct, and dpu_graph.py
from this folder.
"""

import argparse
import glob
import json
import os
import sys

import cv2
import numpy as np
import torch
from pytorch_nndct.apis import torch_quantizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dpu_graph  # noqa: E402  (the workspace's own module)


def read_images(folder):
    """Fitted (letterboxed or stretched) BGR PNGs -> float32 NCHW RGB tensors in [0, 1], in file order."""
    images = []
    for path in sorted(glob.glob(os.path.join(folder, "*.png"))):
        image = cv2.imread(path)
        if image is None:
            raise SystemExit("cannot read %s" % path)
        rgb = np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1), dtype=np.float32) / 255.0
        images.append(torch.from_numpy(rgb)[None])
    return images


def batches(images, size):
    return [torch.cat(images[i:i + size]) for i in range(0, len(images), size)]


def forward_all(model, loader):
    """Forward every batch (calibration and fast fine-tuning need only forward passes)."""
    with torch.no_grad():
        for batch in loader:
            model(batch)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quant-mode", choices=("calib", "test"), required=True)
    parser.add_argument("--deploy", action="store_true", help="export the xmodel (test mode)")
    parser.add_argument("--fast-finetune", action="store_true", help="AdaQuant-style fast fine-tuning of the weights")
    parser.add_argument("--config", default="config.json")
    args = parser.parse_args(argv)
    with open(args.config) as fh:
        cfg = json.load(fh)
    model = dpu_graph.load(cfg["graph"], cfg["weights"])
    device = torch.device("cpu")
    height, width = cfg["imgsz"] if isinstance(cfg["imgsz"], list) else (cfg["imgsz"], cfg["imgsz"])
    dummy = torch.rand(1, 3, height, width)
    quantizer = torch_quantizer(args.quant_mode, model, (dummy,), device=device, output_dir=cfg["output_dir"])
    quant_model = quantizer.quant_model
    if args.quant_mode == "calib":
        calib = batches(read_images(cfg["calib_dir"]), cfg["batch"])
        if not calib:
            raise SystemExit("no calibration images in %s" % cfg["calib_dir"])
        if args.fast_finetune:
            quantizer.fast_finetune(forward_all, (quant_model, calib))
        forward_all(quant_model, calib)
        quantizer.export_quant_config()
        return
    if args.fast_finetune:
        quantizer.load_ft_param()
    outputs = {}
    images = read_images(cfg["eval_dir"]) or [dummy]  # export_xmodel needs at least one batch-1 forward
    with torch.no_grad():
        for i, image in enumerate(images):
            for k, out in enumerate(quant_model(image)):
                outputs["img%05d_out%d" % (i, k)] = out.numpy()
    if cfg.get("eval_sources"):
        os.makedirs(cfg["output_dir"], exist_ok=True)
        np.savez(os.path.join(cfg["output_dir"], "eval_outputs.npz"), **outputs)
    if args.deploy:
        quantizer.export_xmodel(deploy_check=False, output_dir=cfg["output_dir"])


if __name__ == "__main__":
    main()
