"""INT8 post-training quantisation of an OpenVINO model with NNCF.

Why NNCF and these settings: static INT8 with calibration on real images, MIXED preset
(symmetric weights, asymmetric activations, which suits SiLU outputs), and the YOLO head's
decode kept in float. With ``max_drop`` NNCF's accuracy-aware loop reverts the most harmful
layers to float until our mAP50-95, measured by running the model, is within the budget.
"""

from __future__ import annotations

import re

from targets.base import ExportConfig
from toolchain.core.errors import EdgepruneError
from toolchain.core.prepost import predictions
from toolchain.models.evaluation import evaluate_callable
from toolchain.models.imagedata import calibration_batches, image_files
from toolchain.models.loading import read_data_yaml


def head_ignored_scope(head_scope: str | None):
    """NNCF IgnoredScope keeping the YOLO head's decode in float (names from convert_model)."""
    import nncf

    if not head_scope:
        return nncf.IgnoredScope(types=["Sigmoid"], validate=False)
    head = re.escape(f"__module.{head_scope}")
    return nncf.IgnoredScope(
        patterns=[f"{head}/.*", f"{head}\\.dfl.*"],  # ops of the head's own forward (decode), and the DFL
        types=["Sigmoid"],
        validate=False,
    )


def quantize_ir(model, source, cfg: ExportConfig):
    import nncf

    if not cfg.data:
        raise EdgepruneError("INT8 needs calibration images: pass --data DATA (a YOLO data.yaml)")
    calib = nncf.Dataset(calibration_batches(cfg.data, source.input_hw, cfg.calib_images, resize=source.resize))
    common = dict(
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=cfg.calib_images,
        ignored_scope=head_ignored_scope(source.head_scope),
    )
    if cfg.max_drop is None:
        return nncf.quantize(model, calib, **common)

    nc = read_data_yaml(cfg.data)["nc"]
    val_files = image_files(cfg.data, "val")

    def validate(compiled_model, items) -> float:
        # NNCF calls this on the whole set and on single images (to rank per-sample damage).
        def predict(x):
            result = compiled_model(x)
            return predictions([result[port] for port in compiled_model.outputs], source.head, x.shape[-2:])

        return evaluate_callable(predict, cfg.data, source.input_hw, nc, files=list(items),
                                 resize=source.resize)["map50_95"]

    return nncf.quantize_with_accuracy_control(
        model, calib, nncf.Dataset(val_files), validation_fn=validate, max_drop=cfg.max_drop,
        drop_type=nncf.DropType.ABSOLUTE, **common,
    )
