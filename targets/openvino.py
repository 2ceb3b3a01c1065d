"""OpenVINO IR target: FP32/FP16 IR via ``openvino.convert_model``, INT8 via NNCF.

The deploy folder itself is laid out as Ultralytics' OpenVINO export (``<stem>.xml/.bin`` plus
``metadata.yaml``, with edgeprune's ``deploy.json`` beside them), so ``YOLO(out)`` predicts and
validates it when the folder's name ends with ``_openvino_model`` (how Ultralytics recognises the
format; deploy notes it otherwise). INT8 uses ``nncf.quantize`` with the
MIXED preset on calibration images; the YOLO head's decode (DFL, box arithmetic, Sigmoid)
stays in float, which is what keeps INT8 YOLO scores from collapsing to zero. The runner
reports the precision the CPU plugin actually executes: on CPUs with bf16 support an "FP32"
IR runs in bf16 unless ``precision="f32"`` is forced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from targets.artifacts import read_decoding, read_deploy_record, read_metadata
from targets.base import PRECISIONS, ExportConfig, Target, TargetOption
from targets.quantize_openvino import quantize_ir
from targets.registry import register_target
from targets.runner import Runner, RunnerInfo
from toolchain.core.errors import EdgepruneError, InputFileError, opening

FORCEABLE = {"f32": "f32", "bf16": "bf16", "f16": "f16"}
ULTRALYTICS_SUFFIX = "_openvino_model"  # what ultralytics.nn.autobackend matches in a folder name
U8_INPUT = "u8_nhwc_bgr"  # metadata value of an IR whose input is the letterboxed uint8 BGR image


def _core():
    import openvino as ov

    return ov.Core()


def _artifact_precision(model) -> str:
    """int8 if the IR holds FakeQuantize ops, fp16 if it stores f16 constants, else fp32."""
    types = {op.get_type_name() for op in model.get_ops()}
    if "FakeQuantize" in types or "FakeConvert" in types:
        return "int8"
    for op in model.get_ops():
        if op.get_type_name() == "Constant" and op.get_output_element_type(0).get_type_name() == "f16":
            return "fp16"
    return "fp32"


def check_ir_files(xml: Path) -> None:
    """Refuse a damaged IR by name before OpenVINO sees it: unparsable .xml, missing or short .bin.

    Why: OpenVINO reports these as C++ assertion texts ("Check 'is_valid_weights_range' failed
    at src/core/xml_util…") that name neither the file nor what to do.
    """
    import xml.etree.ElementTree as ET

    xml = Path(xml)
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as exc:
        raise InputFileError(f"OpenVINO IR {xml} is not valid XML ({exc}); is it truncated?") from None
    except OSError as exc:
        raise InputFileError(f"OpenVINO IR {xml} cannot be read ({exc.strerror})") from None
    if root.tag != "net":
        raise InputFileError(f"{xml} is not an OpenVINO IR (its root element is <{root.tag}>, expected <net>)")
    needed = max((int(d.get("offset")) + int(d.get("size")) for d in root.iter("data")
                  if d.get("offset", "").isdigit() and d.get("size", "").isdigit()), default=0)
    if needed:
        weights = xml.with_suffix(".bin")
        if not weights.is_file():
            raise InputFileError(f"OpenVINO IR {xml} needs its weights {weights}, which does not exist")
        have = weights.stat().st_size
        if have < needed:
            raise InputFileError(f"OpenVINO weights {weights} hold {have} bytes but {xml.name} needs {needed}; "
                                 "is the .bin truncated or from another model?")


class OpenVINORunner(Runner):
    """A compiled IR. ``compiled`` is public so callers can use the very same compiled model."""

    def __init__(self, xml: Path, device: str, precision: str, threads: int | None, hint: str = "latency",
                 requests: int | None = None, input_hw: tuple[int, int] | None = None, batch: int = 1,
                 u8_input: bool = False):
        import openvino as ov

        core = _core()
        check_ir_files(xml)
        with opening(xml, "OpenVINO IR"):
            self.model = core.read_model(str(xml))
        # an IR built with --u8-input takes the letterboxed uint8 BGR image, NHWC (pre-processing is in the graph)
        self.accepts_u8_bgr = (read_metadata(xml).get("edgeprune") or {}).get("input") == U8_INPUT
        hw = slice(1, 3) if self.accepts_u8_bgr else slice(2, 4)
        shape = self.model.inputs[0].get_partial_shape()

        def with_hw(h, w):
            dims = [shape[i] for i in range(4)]
            dims[hw] = [h, w]
            return ov.PartialShape([batch if i == 0 else d for i, d in enumerate(dims)])

        if input_hw is not None and (shape.is_dynamic or tuple(shape.to_shape())[hw] != tuple(input_hw)):
            if not shape.is_dynamic:
                static = tuple(shape.to_shape())[hw]
                raise EdgepruneError(
                    f"{xml} is a static {static[0]}x{static[1]} IR; deploy with --dynamic-shape to run it at "
                    f"{input_hw[0]}x{input_hw[1]}"
                )
            self.model.reshape({self.model.inputs[0]: with_hw(*input_hw)})
        elif shape.is_dynamic:
            imgsz = read_metadata(xml).get("imgsz") or [640, 640]
            self.model.reshape({self.model.inputs[0]: with_hw(*imgsz)})
        elif shape[0].get_length() != batch:  # a static IR runs at another batch as benchmark_app -b does it
            dims = list(shape.to_shape())
            dims[0] = batch
            with opening(xml, f"OpenVINO IR at batch {batch}"):
                self.model.reshape({self.model.inputs[0]: ov.PartialShape(dims)})
        if u8_input and not self.accepts_u8_bgr:
            # the stream runner's default: uint8 -> float, BGR -> RGB and /255 run inside the request, on the
            # runtime's threads, instead of in numpy on the thread that also decodes boxes
            self.model = _u8_bgr_input(self.model)
            self.accepts_u8_bgr = True
        config: dict = {"PERFORMANCE_HINT": hint.upper()}
        if precision != "auto":
            if precision not in FORCEABLE:
                raise EdgepruneError(f"--infer-precision must be auto, f32, bf16 or f16 for OpenVINO, got {precision!r}")
            config["INFERENCE_PRECISION_HINT"] = FORCEABLE[precision]
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if requests:
            config["PERFORMANCE_HINT_NUM_REQUESTS"] = int(requests)
        with opening(xml, "OpenVINO IR for this device"):
            self.compiled = core.compile_model(self.model, device, config)
        executed = _executed_precision(self.compiled)
        stored = read_metadata(xml).get("edgeprune", {}).get("precision") or _artifact_precision(self.model)
        if stored == "int8":
            executed = f"int8 + {executed}"
        port = self.compiled.inputs[0]
        dims = tuple(port.get_partial_shape().to_shape())
        self.info = RunnerInfo(
            backend="openvino", backend_version=ov.__version__.split("-")[0], device=device, artifact_precision=stored,
            executed_precision=executed, threads=_threads(self.compiled, threads), input_name=port.get_any_name(),
            # the logical NCHW float shape every caller feeds; a u8 IR converts it (see outputs)
            input_shape=(dims[0], dims[3], dims[1], dims[2]) if self.accepts_u8_bgr else dims,
            input_format="uint8 NHWC BGR, pre-processing in the graph" if self.accepts_u8_bgr else "float32 NCHW RGB",
        )
        self.head, self.resize = read_decoding(xml)

    def _feed(self, x: np.ndarray) -> np.ndarray:
        """What the IR takes: float NCHW RGB in [0, 1] becomes uint8 NHWC BGR for a --u8-input IR."""
        if self.accepts_u8_bgr and x.dtype != np.uint8:
            return np.ascontiguousarray(np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)[:, ::-1]
                                        .transpose(0, 2, 3, 1))
        return x

    def outputs(self, x: np.ndarray) -> list[np.ndarray]:
        result = self.compiled(self._feed(x))
        return [result[port] for port in self.compiled.outputs]

    def default_requests(self) -> int:
        try:
            return int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        except Exception:
            return 1

    def run_loop(self, x, requests, keep_going):
        """``requests`` OpenVINO infer requests kept busy, oldest waited for first.

        No Python completion callbacks: a callback needs the GIL on an OpenVINO thread, which
        can deadlock against the interpreter when the compiled model is torn down. Latency is
        OpenVINO's own per-request measurement.
        """
        import time
        from collections import deque

        import openvino as ov

        pool = [self.compiled.create_infer_request() for _ in range(max(1, requests))]
        x = self._feed(x)
        for request in pool:  # fill inputs once, outside the timed loop
            request.set_input_tensor(ov.Tensor(x))
        latencies: list[float] = []
        in_flight: deque = deque()
        started = 0
        t0 = time.perf_counter()
        for request in pool:
            if not keep_going(started, time.perf_counter() - t0):
                break
            request.start_async()
            in_flight.append(request)
            started += 1
        while in_flight:
            request = in_flight.popleft()
            request.wait()
            latencies.append(request.latency / 1000.0)
            if keep_going(started, time.perf_counter() - t0):
                request.start_async()
                in_flight.append(request)
                started += 1
        return latencies, time.perf_counter() - t0

    def pipeline(self, produce, consume, requests, keep_going):
        """An async request queue of ``requests`` OpenVINO infer requests, oldest first (no Python callbacks)."""
        import time
        from collections import deque

        import openvino as ov

        pool = deque(self.compiled.create_infer_request() for _ in range(max(1, requests)))
        in_flight: deque = deque()
        latencies: list[float] = []
        started = 0
        t0 = time.perf_counter()

        def start(request) -> None:
            nonlocal started
            begin = time.perf_counter()
            x, token = produce()
            request.set_input_tensor(ov.Tensor(np.ascontiguousarray(self._feed(x))))
            request.start_async()
            in_flight.append((request, token, begin))
            started += 1

        while pool and keep_going(started, time.perf_counter() - t0):
            start(pool.popleft())
        while in_flight:
            request, token, begin = in_flight.popleft()
            request.wait()
            consume([request.get_output_tensor(i).data.copy() for i in range(len(self.compiled.outputs))], token)
            latencies.append(time.perf_counter() - begin)
            if keep_going(started, time.perf_counter() - t0):
                start(request)
        return latencies, time.perf_counter() - t0


def _u8_bgr_input(model):
    """The model with OpenVINO's PrePostProcessor in front: uint8 NHWC BGR in, float NCHW RGB / 255 to the network."""
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor

    ppp = PrePostProcessor(model)
    tensor = ppp.input().tensor()
    tensor.set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).scale(255.0)
    return ppp.build()


def _executed_precision(compiled) -> str:
    try:
        return str(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())  # e.g. f32, bf16
    except Exception:  # some plugins do not report it
        return "unknown"


def _threads(compiled, requested):
    try:
        return int(compiled.get_property("INFERENCE_NUM_THREADS"))
    except Exception:
        return requested


@register_target
class OpenVINOTarget(Target):
    """OpenVINO IR on CPU, GPU, NPU or AUTO."""

    name = "openvino"
    summary = "OpenVINO IR (Ultralytics layout, so YOLO(folder) runs it too); INT8 through NNCF."
    precisions = PRECISIONS
    compute_precisions = ("auto", "f32", "bf16", "f16")
    default_device = "CPU"
    device_help = "OpenVINO device: CPU, GPU, NPU, AUTO."
    options = (TargetOption("--u8-input", "Pre-processing in the IR (OpenVINO PrePostProcessor): it takes the letterboxed "
                            "uint8 BGR image, NHWC, and converts, reorders and scales it itself. edgeprune's runners "
                            "feed it either way; YOLO(folder) cannot run it.", is_flag=True, default=False),)

    def check_config(self, cfg: ExportConfig) -> None:
        if cfg.max_drop is not None and cfg.precision not in ("int8", "auto"):
            raise EdgepruneError("--max-drop applies to --precision auto (the choice) and int8 (accuracy control)")

    def verify_precision(self, precision: str) -> str:
        # an FP32 IR is checked in f32: OpenVINO would otherwise pick bf16 on CPUs that have it
        return "f32" if precision == "fp32" else "auto"

    def devices(self) -> list[str]:
        return list(_core().available_devices)

    def check_device(self, device: str) -> str:
        device = device.upper()
        base = device.split(":")[0].split(".")[0]
        if base in ("AUTO", "MULTI", "HETERO"):
            return device
        available = self.devices()
        if device not in available and base not in {d.split(".")[0] for d in available}:
            raise EdgepruneError(f"OpenVINO device {device!r} is not present; available devices: {', '.join(available)}")
        return device

    def export(self, source, out_dir: Path, cfg: ExportConfig) -> str:
        import openvino as ov

        shape = list(source.example.shape)
        if source.dynamic:
            shape[2:] = [-1, -1]
        if source.dynamic_batch:
            shape[0] = -1
        model = ov.convert_model(source.module, example_input=source.example, input=[ov.PartialShape(shape)])
        model.inputs[0].get_tensor().set_names({"images"})
        for port, name in zip(model.outputs, source.output_names):
            port.get_tensor().set_names({name})
        if cfg.precision == "int8":
            model = quantize_ir(model, source, cfg)  # calibrated on float inputs, so before the u8 pre-processing
        extra = {}
        if cfg.options.get("u8_input"):
            model, extra = _u8_bgr_input(model), {"input": U8_INPUT}
        folder = Path(out_dir)  # the (staged) deploy folder is the model folder: YOLO(out) loads it
        folder.mkdir(parents=True, exist_ok=True)
        ov.save_model(model, str(folder / f"{source.stem}.xml"), compress_to_fp16=cfg.precision == "fp16")
        source.write_metadata(folder, cfg.precision, **extra)
        return str(folder)

    def verify(self, source, artifact: Path, cfg: ExportConfig, device: str, evaluate: bool = True) -> dict:
        proof = super().verify(source, artifact, cfg, device, evaluate=evaluate)
        name = Path(cfg.final_dir or artifact).name
        if source.runs_in_ultralytics and not name.endswith(ULTRALYTICS_SUFFIX):
            proof["notes"] = [*proof.get("notes", []),
                              f"Ultralytics recognises an OpenVINO folder by its name: deploy to --out "
                              f"{source.stem}{ULTRALYTICS_SUFFIX} (any folder ending so) to load it with YOLO(out)"]
        return proof

    def describe(self, artifact: Path) -> dict:
        xml = self.xml_of(artifact)
        check_ir_files(xml)
        with opening(xml, "OpenVINO IR"):
            model = _core().read_model(str(xml))
        types = [op.get_type_name() for op in model.get_ops()]
        return {"ops": len(types), "fake_quantize_ops": types.count("FakeQuantize")}

    def owns(self, artifact: Path) -> bool:
        artifact = Path(artifact)
        if artifact.suffix == ".xml":
            return True
        if artifact.is_dir() and any(artifact.glob("*.xml")):
            return True
        record = read_deploy_record(artifact) if artifact.is_dir() else None
        return bool(record and record.get("target") == self.name)

    def xml_of(self, artifact: Path) -> Path:
        artifact = Path(artifact)
        if artifact.is_dir():
            record = read_deploy_record(artifact)
            if record and (artifact / record["artifact"]).exists() and not any(artifact.glob("*.xml")):
                artifact = artifact / record["artifact"]
            xmls = sorted(artifact.glob("*.xml"))
            if not xmls:
                raise InputFileError(f"{artifact} holds no OpenVINO .xml file")
            return xmls[0]
        if not artifact.exists():
            raise InputFileError(f"OpenVINO IR {artifact} does not exist")
        return artifact

    def open(self, artifact: Path, device: str = "cpu", precision: str = "auto", threads: int | None = None,
             hint: str = "latency", requests: int | None = None, input_hw: tuple[int, int] | None = None,
             batch: int = 1, u8_input: bool = False) -> OpenVINORunner:
        """``u8_input``: put the input conversion into the graph with PrePostProcessor (what ``stream`` runs)."""
        return OpenVINORunner(self.xml_of(artifact), self.check_device(device), precision, threads, hint, requests,
                              input_hw, batch, u8_input)
