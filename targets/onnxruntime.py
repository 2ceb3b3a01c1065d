"""ONNX Runtime target: FP32/FP16 ONNX, and static INT8 (QDQ, per-channel) for CPU or CUDA.

Why static INT8 only: dynamic quantisation computes activation ranges at run time and, for
conv networks, adds quantise/dequantise work on every layer, so it is typically *slower*
than FP32 (one YOLO write-up measured 53.6 → 78.7 ms). We calibrate on real images (``quant_pre_process`` first, as ORT
recommends), quantise per channel in QDQ format, and leave the YOLO head's decode nodes in
float, which is what keeps INT8 scores from collapsing to zero.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from targets.artifacts import read_decoding, read_deploy_record, read_metadata
from targets.base import PRECISIONS, ExportConfig, Target, TargetOption
from targets.registry import register_target
from targets.runner import Runner, RunnerInfo
from toolchain.core.errors import EdgepruneError, InputFileError, opening
from toolchain.models.imagedata import calibration_batches

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}

DYNAMIC_REFUSAL = (
    "dynamic INT8 quantisation is refused for conv models: ONNX Runtime computes activation scales at run time and "
    "quantises around every conv, which made YOLO slower in practice (53.6 ms -> 78.7 ms); use static INT8 "
    "(--precision int8 --data DATA), which calibrates once on real images"
)


def export_onnx(source, path: Path, opset: int | None = None) -> int:
    """torch → ONNX (fixed input shape unless ``source.dynamic``), simplified with onnxslim; returns the opset."""
    import onnx
    import onnxslim
    from ultralytics.utils.export.engine import best_onnx_opset, torch2onnx

    opset = opset or best_onnx_opset(onnx)
    dynamic = None
    if source.dynamic:  # YOLO heads: (B, 4 + nc, anchors); Darknet maps: (B, C, H, W); Darknet rows: (N, 5 + nc)
        rows = not source.dynamic_batch  # one image's rows: batch 1
        dynamic = {"images": {2: "height", 3: "width"} if rows else {0: "batch", 2: "height", 3: "width"}}
        for name in source.output_names:
            dynamic[name] = {0: "rows"} if rows else \
                ({0: "batch", 2: "height", 3: "width"} if source.head else {0: "batch", 2: "anchors"})
    torch2onnx(source.module, source.example, str(path), opset=opset, output_names=list(source.output_names),
               dynamic=dynamic)
    onnx.save(onnxslim.slim(onnx.load(str(path))), str(path))
    embed_metadata(path, source, "fp32")
    return opset


def embed_metadata(path: Path, source, precision: str) -> None:
    """Ultralytics' metadata keys inside the ONNX file (what ``YOLO("x.onnx")`` reads), true to ``precision``.

    Written again after FP16 conversion or INT8 quantization, so ``args.int8`` says what the file holds.
    """
    import onnx

    model = onnx.load(str(path))
    meta = source.metadata(precision)
    keys = ("stride", "task", "batch", "imgsz", "names", "channels", "args")
    kept = [p for p in model.metadata_props if p.key not in keys]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key in keys:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(meta[key])
    onnx.save(model, str(path))


def head_decode_nodes(model_path: Path, head_scope: str | None) -> list[str]:
    """Nodes of the YOLO head's own forward (decode, DFL, Sigmoid): kept in float by INT8."""
    import onnx

    if not head_scope:
        return []
    prefix = f"/{head_scope}/"
    dfl = f"/{head_scope}/dfl/"
    model = onnx.load(str(model_path))
    return [n.name for n in model.graph.node
            if (n.name.startswith(prefix) and n.name.count("/") == prefix.count("/")) or n.name.startswith(dfl)
            or n.op_type == "Sigmoid"]


class _CalibrationReader:
    """onnxruntime.quantization.CalibrationDataReader over letterboxed data-set images."""

    def __init__(self, input_name: str, batches: list[np.ndarray]):
        self._items = iter([{input_name: b} for b in batches])

    def get_next(self):
        return next(self._items, None)

    def rewind(self):  # pragma: no cover - not used by MinMax calibration
        pass


def quantize_int8(fp32_path: Path, out_path: Path, source, cfg: ExportConfig) -> list[str]:
    """Static QDQ per-channel INT8 with 7-bit weights; returns the node names kept in float.

    Why 7-bit weights (``reduce_range``): x86 CPUs without VNNI (AVX2, early AVX-512) multiply
    u8 activations by s8 weights with ``vpmaddubsw``, which sums pairs into int16 and saturates;
    SiLU networks such as YOLO lose accuracy to it (measured on an AVX2 EPYC: mAP50 0.820 vs
    0.908 FP32 for the committed yolov8n; a Zen 4 EPYC with VNNI scores 0.909 with 8- or 7-bit
    weights).
    With weights in [-64, 63] a pair sum cannot overflow, so the artifact is accurate on
    whichever CPU it lands on. OpenVINO's NNCF applies the same fix (its overflow_fix).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not cfg.data:
        raise EdgepruneError("INT8 needs calibration images: pass --data DATA (a YOLO data.yaml)")
    prepped = out_path.with_name(out_path.stem + ".prep.onnx")
    quant_pre_process(str(fp32_path), str(prepped), skip_symbolic_shape=True)
    excluded = head_decode_nodes(prepped, source.head_scope)
    reader = _CalibrationReader("images", calibration_batches(cfg.data, source.input_hw, cfg.calib_images,
                                                             resize=source.resize))
    quantize_static(
        str(prepped), str(out_path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
        calibrate_method=CalibrationMethod.MinMax, reduce_range=True,
    )
    prepped.unlink()
    return excluded


def to_fp16(fp32_path: Path, out_path: Path) -> None:
    """FP16 weights and compute with FP32 inputs/outputs, so callers feed the same arrays."""
    import onnx
    from onnxconverter_common import float16

    # Resize's scales input must stay float32 (ORT rejects the cast the converter inserts around it).
    # Stale value_info from onnxslim makes the converter type the cast around it wrongly: drop it first.
    block = list(float16.DEFAULT_OP_BLOCK_LIST) + ["Resize"]
    model = onnx.load(str(fp32_path))
    del model.graph.value_info[:]
    model = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block)
    onnx.save(model, str(out_path))


def _default_threads() -> int:
    """What ONNX Runtime's CPU provider uses when not told: one intra-op thread per physical core."""
    import psutil

    return psutil.cpu_count(logical=False) or 1


class ONNXRuntimeRunner(Runner):
    def __init__(self, path: Path, device: str, threads: int | None, input_hw: tuple[int, int] | None = None,
                 batch: int = 1):
        import onnxruntime as ort

        provider = PROVIDERS[device]
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        with opening(path, "ONNX model"):
            self.session = ort.InferenceSession(str(path), opts, providers=[provider])
        inp = self.session.get_inputs()[0]
        shape = list(inp.shape)
        dynamic = not all(isinstance(d, int) for d in shape[2:])
        if input_hw is not None and not dynamic and tuple(shape[2:]) != tuple(input_hw):
            raise EdgepruneError(f"{path} has a static {shape[2]}x{shape[3]} input; deploy with --dynamic-shape to "
                                 f"run it at {input_hw[0]}x{input_hw[1]}")
        if dynamic:
            shape[2:] = input_hw or read_metadata(path).get("imgsz") or [640, 640]
        if isinstance(shape[0], int) and shape[0] != batch:
            raise EdgepruneError(f"{path} has a static batch of {shape[0]}; deploy with --dynamic-shape (dynamic batch "
                                 f"and size) to run it at batch {batch}")
        shape[0] = batch
        stored = read_metadata(path).get("edgeprune", {}).get("precision") or _onnx_precision(path)
        self.input_name = inp.name
        self.info = RunnerInfo(
            backend="onnxruntime", backend_version=ort.__version__, device=f"{device} ({provider})",
            artifact_precision=stored,
            # the CPU provider lacks f16 kernels for some ops and casts around them
            executed_precision={"int8": "int8 + f32", "fp16": "f16 + f32" if device == "cpu" else "f16"}.get(stored, "f32"),
            threads=threads or opts.intra_op_num_threads or _default_threads(), input_name=inp.name,
            input_shape=tuple(int(d) for d in shape),
        )
        self.head, self.resize = read_decoding(path)

    def outputs(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: x})


def _onnx_precision(path: Path) -> str:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    ops = {n.op_type for n in model.graph.node}
    if "QuantizeLinear" in ops or "QLinearConv" in ops:
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "fp16"
    return "fp32"


@register_target
class ONNXRuntimeTarget(Target):
    """ONNX Runtime with the CPU, CUDA or TensorRT execution provider."""

    name = "onnx"
    summary = "ONNX (simplified with onnxslim); INT8 is static QDQ per-channel with the head's decode in float."
    precisions = PRECISIONS
    device_help = "ONNX Runtime execution provider the artifact is checked on: " + ", ".join(PROVIDERS) + "."
    options = (TargetOption("--dynamic", "Dynamic INT8 quantisation (refused for conv models, with the reason).",
                            is_flag=True, default=False, dest="dynamic_quantization"),)

    def check_config(self, cfg: ExportConfig) -> None:
        if cfg.options.get("dynamic_quantization"):
            raise EdgepruneError(DYNAMIC_REFUSAL)
        if cfg.max_drop is not None and cfg.precision != "auto":
            raise EdgepruneError("ONNX Runtime's INT8 has no accuracy control: --max-drop applies to --precision auto "
                                 "(which keeps INT8 only when it stays within the drop)")

    def devices(self) -> list[str]:
        import onnxruntime as ort

        available = set(ort.get_available_providers())
        return [name for name, provider in PROVIDERS.items() if provider in available]

    def check_device(self, device: str) -> str:
        device = device.lower()
        if device not in self.devices():
            raise EdgepruneError(
                f"ONNX Runtime device {device!r} is not available; available: {', '.join(self.devices())}"
            )
        return device

    def export(self, source, out_dir: Path, cfg: ExportConfig) -> str:
        import tempfile

        out_dir = Path(out_dir)
        final = out_dir / f"{source.stem}.onnx"
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{source.stem}-onnx-build-", dir=out_dir) as build:
            tmp = Path(build)
            fp32 = tmp / f"{source.stem}.fp32.onnx"
            export_onnx(source, fp32)
            if cfg.precision == "fp32":
                fp32.rename(tmp / final.name)
            elif cfg.precision == "fp16":
                to_fp16(fp32, tmp / final.name)
            else:
                quantize_int8(fp32, tmp / final.name, source, cfg)
            if cfg.precision != "fp32":
                embed_metadata(tmp / final.name, source, cfg.precision)
            source.write_metadata(tmp, cfg.precision)
            (tmp / final.name).replace(final)  # the model first: metadata never describes a missing file
            (tmp / "metadata.yaml").replace(out_dir / "metadata.yaml")
        return str(final)

    def describe(self, artifact: Path) -> dict:
        import onnx

        with opening(artifact, "ONNX model"):
            model = onnx.load(str(artifact), load_external_data=False)
        ops = [n.op_type for n in model.graph.node]
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        return {"onnx_opset": opset, "nodes": len(ops), "quantize_linear_nodes": ops.count("QuantizeLinear")}

    def owns(self, artifact: Path) -> bool:
        artifact = Path(artifact)
        if artifact.suffix == ".onnx":
            return True
        record = read_deploy_record(artifact) if artifact.is_dir() else None
        return bool(record and record.get("target") == self.name)

    def open(self, artifact: Path, device: str = "cpu", precision: str = "auto", threads: int | None = None,
             hint: str = "latency", requests: int | None = None, input_hw: tuple[int, int] | None = None,
             batch: int = 1) -> ONNXRuntimeRunner:
        artifact = Path(artifact)
        if artifact.is_dir():
            record = read_deploy_record(artifact) or {}
            artifact = artifact / record.get("artifact", "")
        if not artifact.is_file():
            raise InputFileError(f"ONNX model {artifact} does not exist")
        if precision not in ("auto", "f32"):
            raise EdgepruneError(f"ONNX Runtime runs the precision stored in the model; --infer-precision {precision} "
                                 "cannot be forced (deploy with --precision fp16 instead)")
        return ONNXRuntimeRunner(artifact, self.check_device(device), threads, input_hw, batch)
