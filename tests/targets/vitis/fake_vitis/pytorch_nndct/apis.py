"""Fake ``pytorch_nndct.apis.torch_quantizer`` (tests only): records calls in OUTPUT_DIR/fake_nndct.json."""

import json
import os

import torch


class _Counting(torch.nn.Module):
    def __init__(self, module, record):
        super().__init__()
        self.module, self.record = module, record

    def forward(self, x):
        self.record["forwards"].append(list(x.shape))
        return self.module(x)


class torch_quantizer:
    def __init__(self, quant_mode, module, input_args=None, state_dict_file=None, output_dir="quantize_result",
                 bitwidth=8, device=torch.device("cuda"), quant_config_file=None, target=None):
        if quant_mode not in ("calib", "test"):
            raise ValueError("fake nndct: quant_mode must be calib or test, got %r" % quant_mode)
        if device.type != "cpu":
            raise ValueError("fake nndct: the CPU image has no CUDA; pass device=torch.device('cpu')")
        self.mode, self.output_dir = quant_mode, output_dir
        os.makedirs(output_dir, exist_ok=True)
        self.log = os.path.join(output_dir, "fake_nndct.json")
        self.record = {"mode": quant_mode, "module": type(module).__name__, "bitwidth": bitwidth, "forwards": [],
                       "input_args": [list(a.shape) for a in input_args], "calls": []}
        self.quant_model = _Counting(module, self.record)

    def _save(self, call):
        self.record["calls"].append(call)
        history = json.load(open(self.log)) if os.path.exists(self.log) else []
        with open(self.log, "w") as fh:
            json.dump(history + [dict(self.record)], fh)

    def fast_finetune(self, run_fn, run_args):
        run_fn(*run_args)
        open(os.path.join(self.output_dir, "fake_fast_finetune.done"), "w").close()
        self.record["calls"].append("fast_finetune")

    def load_ft_param(self):
        if not os.path.exists(os.path.join(self.output_dir, "fake_fast_finetune.done")):
            raise RuntimeError("fake nndct: load_ft_param() before fast_finetune() in calib mode")
        self.record["calls"].append("load_ft_param")

    def export_quant_config(self):
        if self.mode != "calib" or not self.record["forwards"]:
            raise RuntimeError("fake nndct: export_quant_config() needs calib mode and calibration forwards")
        with open(os.path.join(self.output_dir, "quant_info.json"), "w") as fh:
            json.dump({"calibration_forwards": self.record["forwards"]}, fh)
        self._save("export_quant_config")

    def export_xmodel(self, output_dir="quantize_result", deploy_check=False):
        if self.mode != "test":
            raise RuntimeError("fake nndct: export_xmodel() needs test mode")
        if not os.path.exists(os.path.join(self.output_dir, "quant_info.json")):
            raise RuntimeError("fake nndct: export_xmodel() before calibration")
        if not any(shape[0] == 1 for shape in self.record["forwards"]):
            raise RuntimeError("fake nndct: export_xmodel() needs a batch-1 forward in test mode")
        with open(os.path.join(output_dir, "%s_int.xmodel" % self.record["module"]), "w") as fh:
            fh.write("fake quantized xmodel (edgeprune tests)\n")
        self._save({"export_xmodel": {"output_dir": output_dir, "deploy_check": deploy_check}})
