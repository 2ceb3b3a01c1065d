"""Darknet models: a ``.cfg`` and its ``.weights``, run as the PyTorch module cfg_codegen generates.

Why through the generated module: it is the code checked against OpenCV's Darknet importer, so
every artifact built from it (OpenVINO, ONNX, the DPU) inherits that parity, and deploy's
fidelity check compares against it. The module returns the raw maps feeding each ``[yolo]``
layer (named as OpenCV names them, ``conv_N``); the anchors, ``scale_x_y`` and ``new_coords``
of each head go into the artifact's metadata (``edgeprune.head``), so evaluation, the bench
and the board decode them with :func:`toolchain.core.prepost.decode_darknet`. Images are stretched
to the input size, as Darknet does, unless the cfg says ``letter_box=1``.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cfg_codegen.build import build_model, random_model
from cfg_codegen.errors import UnsupportedCfgError
from cfg_codegen.layers import Convolutional
from cfg_codegen.parser import parse_cfg
from cfg_codegen.prune import PruneConfig as DarknetPrune
from cfg_codegen.prune import prune_darknet
from cfg_codegen.shapes import infer_shapes
from cfg_codegen.weights import read_weights
from toolchain.core.device import resolve_device
from toolchain.core.errors import EdgepruneError, InputFileError, ModelMismatchError, UnsupportedModelError
from toolchain.core.fileio import sha256_of
from toolchain.models.darknet_train.trainer import DarknetTrainConfig, save_darknet, train_darknet
from toolchain.models.evaluation import evaluate_source
from toolchain.models.label_free import LabelFreeConfig, recover
from toolchain.models.loading import read_data_yaml
from toolchain.models.model_stats import model_stats
from toolchain.models.sources import companion_weights, prepare, register_source
from toolchain.models.sources.base import ExportSource, ModelSource, SourceRequest, refuse
from toolchain.models.sparsity import GammaSnapshot, SparsityResult
from toolchain.models.training import TrainResult
from toolchain.models.validator import scores_as_result

DECODE_SCOPE = "decode"  # module path of the decode appended with ``decode=True`` (kept in float by INT8)


class DarknetRows(nn.Module):
    """The generated model followed by its decode: OpenCV DNN's yolo rows per head.

    The decode is a submodule of its own (:data:`DECODE_SCOPE`), so quantizers can leave its
    box arithmetic in float, as they do for an Ultralytics head.
    """

    def __init__(self, model: nn.Module, height: int, width: int):
        super().__init__()
        self.model = model
        self.decode = _Decode(model, height, width)

    def forward(self, x):
        return self.decode(*self.model(x))


class _Decode(nn.Module):
    def __init__(self, model: nn.Module, height: int, width: int):
        super().__init__()
        self.heads = nn.ModuleList(getattr(model, f"l{index}") for index in model.HEAD_LAYERS)
        self.height, self.width = height, width

    def forward(self, *maps):
        return tuple(head.decode(m, self.height, self.width) for head, m in zip(self.heads, maps, strict=True))


def output_names(network, decode: bool) -> tuple[str, ...]:
    """OpenCV's names for what each head outputs: ``yolo_N`` (rows) or the layer feeding it (``conv_N``)."""

    names = []
    for yolo in network.yolo_layers:
        if decode:
            names.append(f"yolo_{yolo.index}")
        else:
            feeding = network.layers[yolo.index - 1]
            names.append(f"conv_{feeding.index}" if isinstance(feeding, Convolutional)
                         else f"{feeding.kind}_{feeding.index}")
    return tuple(names)


def head_description(network, shapes, height: int, width: int, decode: bool) -> dict:
    """The metadata that turns the outputs into boxes (:func:`toolchain.core.prepost.predictions`)."""
    classes = {y.classes for y in network.yolo_layers}
    if len(classes) != 1:
        raise ModelMismatchError(f"{network.path}: the [yolo] layers disagree on the class count "
                                 f"({', '.join(map(str, sorted(classes)))})")
    heads = []
    for yolo in network.yolo_layers:
        shape = shapes[yolo.index]
        heads.append({"layer": yolo.index, "anchors": [[_plain(a) for a in pair] for pair in yolo.head_anchors],
                      "mask": list(yolo.mask), "stride": [_plain(width / shape.width), _plain(height / shape.height)],
                      "scale_x_y": yolo.scale_x_y, "new_coords": yolo.new_coords, "thresh": yolo.thresh})
    return {"format": "darknet-rows" if decode else "darknet", "nc": classes.pop(), "heads": heads}


def _plain(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def default_weights(cfg: Path) -> Path | None:
    """``<cfg stem>.weights`` beside the cfg (cfg-prune writes pruned.cfg + pruned.weights), if present."""
    candidate = Path(cfg).with_suffix(".weights")
    return candidate if candidate.is_file() else None


class _DarknetOperations:
    """Training, sparsity training, evaluation and sweep points of a Darknet cfg + .weights."""

    ULTRALYTICS_ONLY = ("cache", "warmup_epochs", "converge", "from_scratch")

    def default_weights(self, path: Path) -> Path | None:
        return default_weights(path)

    def _start(self, path: Path, weights: str | None, what: str) -> str:
        """The .weights ``what`` starts from: ``weights``, else the file of the same name beside the cfg."""

        return companion_weights(path, weights, what)

    def _run(self, path: Path, data: str, out: Path, request, weights: str | None, on_epoch, sparsity: float = 0.0):
        refuse(path, "a Darknet cfg", request.given(*self.ULTRALYTICS_ONLY), "they are the Ultralytics trainer's")
        if request.teacher not in (None, "auto") or request.given("distill_weight"):
            raise EdgepruneError(f"distillation works on Ultralytics checkpoints; fine-tune {path} without --distill")
        def score(cfg: Path, trained: Path, size: int) -> dict:
            return evaluate_source(prepare(cfg, size, weights=str(trained)), data)

        run = train_darknet(str(path), data, out, DarknetTrainConfig(
            epochs=request.epochs, imgsz=request.imgsz, batch=request.batch, workers=request.workers,
            seed=request.seed, device=request.device, learning_rate=request.lr0, burn_in=request.burn_in,
            sparsity=sparsity, resume=request.resume), evaluate=score, weights=weights, on_epoch=on_epoch)
        result = TrainResult(run.weights, run.run_dir, run.epochs, run.map50, run.map50_95, run.params,
                             notes=run.notes, cfg=run.cfg, history=run.history)
        return result, run.sparsity

    def train(self, path: Path, data: str, out: Path, request, on_epoch=None):
        return self._run(path, data, out, request, request.weights, on_epoch)[0]

    def finetune(self, path: Path, data: str, out: Path, request, on_epoch=None):
        if request.images:
            return self._label_free(path, out, request, on_epoch)
        return self._run(path, data, out, request, self._start(path, request.weights, "fine-tuning"), on_epoch)[0]

    def _label_free(self, path: Path, out: Path, request, on_epoch=None):
        """``finetune --images``: the (pruned) cfg learns the raw head maps of the cfg it was pruned from.

        A cfg records no source, so the teacher is given: ``--distill TEACHER.cfg`` with its .weights
        beside it of the same name (as ``cfg-prune`` reads them). Images are fitted as the cfg says
        (stretched, or letterboxed with ``letter_box=1``); the result is ``weights/best.cfg`` +
        ``best.weights``, like a labelled run's.
        """
        refuse(path, "fine-tuning a Darknet cfg without labels",
               request.given("resume", "burn_in", "distill_weight", *self.ULTRALYTICS_ONLY),
               "they are the labelled trainers' (label-free runs are minutes long and keep no state)")
        if request.teacher in (None, "auto"):
            raise ModelMismatchError(f"--images learns a teacher's outputs and {path} records none: give --distill "
                                     "TEACHER.cfg (the cfg it was pruned from, its .weights beside it)")
        teacher = Path(request.teacher)
        teacher_weights = default_weights(teacher) if teacher.suffix == ".cfg" else None
        if teacher_weights is None:
            raise ModelMismatchError(f"--distill {teacher}: a Darknet cfg learns from a Darknet cfg with its .weights "
                                     f"beside it ({teacher.with_suffix('.weights').name}), the model it was pruned "
                                     "from")
        student = prepare(path, request.imgsz, weights=self._start(path, request.weights, "fine-tuning"))
        tutor = prepare(teacher, input_shape=tuple(student.example.shape), weights=str(teacher_weights))
        network = parse_cfg(path)
        cfg = LabelFreeConfig(epochs=request.epochs, batch=request.batch, seed=request.seed,
                              lr=request.lr0 or LabelFreeConfig().lr, device=resolve_device(request.device).torch)

        def save(model: nn.Module, dest: Path) -> Path:
            return save_darknet(dest.parent, "best", path, network, model)[1]

        result = recover(student.module, tutor.module, request.images, out, student.input_hw, student.resize, cfg,
                         save, str(teacher), on_epoch)
        return replace(result, cfg=str(Path(result.weights).with_suffix(".cfg")))

    def sparsify(self, path: Path, data: str, out: Path, request, on_epoch=None):
        prune_options = [name for name in ("ratio", "method", "round_to", "head_ratio", "hold")
                         if getattr(request, name) is not None]
        prune_options += ["global"] if request.global_pruning else []
        prune_options += ["layers"] if request.layers else []
        refuse(path, "a Darknet cfg", prune_options, "a cfg is sparsity-trained with the L1 penalty --s, then pruned "
                                                     "with `cfg-prune --global-percent`")
        strength = 1e-3 if request.strength is None else request.strength
        if strength <= 0:
            raise EdgepruneError(f"--s must be positive, got {strength}")
        start = self._start(path, request.train.weights, "sparsity training")
        trained, record = self._run(path, data, out, request.train, start, on_epoch, sparsity=strength)
        snapshots = [GammaSnapshot(**s) for s in record["snapshots"]]
        return SparsityResult(trained.weights, trained.run_dir, None, 0, trained, snapshots, record["histograms"],
                              None, trained.notes, strength)

    def evaluate(self, path: Path, data: str, imgsz: int | None = None, batch: int = 16, split: str = "val",
                 weights: str | None = None):
        """The cfg + .weights run in torch (the module its artifacts are checked against) on ``data``."""
        source = prepare(path, imgsz, weights=self._start(path, weights, "evaluating"))
        data_names = read_data_yaml(data)["names"]
        return scores_as_result(str(path), data, source.input_hw[0], "detect", evaluate_source(source, data, split),
                                data_names)

    def prune(self, path: Path, out: Path, cfg, **options):
        raise UnsupportedModelError(
            f"{path} is a Darknet cfg: prune it with `edgeprune cfg-prune CFG WEIGHTS --global-percent P` (or "
            "`sweep CFG --weights W`); deploy, eval, bench, preflight and dpu-rewrite take it with --weights")

    def bn_gammas(self, path: Path, weights: str | None = None):
        network = parse_cfg(path)
        trained = read_weights(self._start(path, weights, "reading the BatchNorm of"), network)
        scales = [torch.tensor(np.abs(c.scales), dtype=torch.float32) for c in trained.convs.values() if c.batch_normalize]
        return torch.cat(scales) if scales else None

    def stats(self, path: Path, imgsz: int, weights: str | None = None):
        source = prepare(path, imgsz, weights=self._start(path, weights, "measuring"))
        return model_stats(source.module, source.example)

    def fit_sweep(self, path: Path, settings):
        defaults = type(settings)(data=settings.data)
        refuse(path, "a Darknet cfg", [{"global_pruning": "global"}.get(n, n)  # named as the CLI names them
                                       for n in ("method", "global_pruning", "steps", "round_to", "head_ratio")
                                       if getattr(settings, n) != getattr(defaults, n)],
               "its sweep prunes with cfg-prune's global BN-gamma percent (and --shortcuts)")
        weights = self._start(path, settings.weights, "a sweep of")  # a sweep prunes trained weights
        source = prepare(path, settings.imgsz, weights=weights)
        if source.input_hw[0] != source.input_hw[1]:
            raise EdgepruneError(f"{path} has a {source.input_hw[1]}x{source.input_hw[0]} (WxH) input; the sweep "
                                 "runs square inputs: give --imgsz")
        nc = read_data_yaml(settings.data)["nc"]
        if nc != source.nc:
            raise ModelMismatchError(f"{path} predicts nc={source.nc} classes but {settings.data} has nc={nc}")
        return replace(settings, imgsz=source.input_hw[0], weights=weights)

    def prune_point(self, path: Path, out_dir: Path, ratio: float, settings, weights: str | None = None):
        """``cfg-prune`` at global percent ``ratio`` after ``settings.shortcuts`` residual units (ratio 0: a copy)."""
        weights = self._start(path, weights, "pruning")
        model, pruned_weights = out_dir / "pruned.cfg", out_dir / "pruned.weights"
        if ratio == 0:
            shutil.copyfile(path, model)
            shutil.copyfile(weights, pruned_weights)
        else:
            prune_darknet(str(path), weights, out_dir, DarknetPrune(ratio, settings.keep, settings.shortcuts))
        return model, str(pruned_weights)


@register_source
class DarknetSource(_DarknetOperations, ModelSource):
    name = "darknet"
    summary = "Darknet .cfg with --weights (default: the .weights of the same name beside it)"
    suffixes = (".cfg",)
    separate_weights = True

    def default_imgsz(self, path: Path) -> tuple[int | None, str]:
        net = parse_cfg(path).net
        if net.width != net.height:
            return None, ""
        return net.width, f"the [net] size of {path}"

    def prepare(self, path: Path, request: SourceRequest) -> ExportSource:
        network = parse_cfg(path)
        net = network.net
        if not network.yolo_layers:
            raise UnsupportedCfgError(f"unsupported: {path} has no [yolo] layer; edgeprune deploys YOLO detectors")
        if request.decode and request.dynamic:
            raise ModelMismatchError("--decode computes box sizes for the input size it is built at; deploy it with a "
                                     "fixed size (no --dynamic-shape), or without --decode")
        height, width = _input_hw(network, request)
        shapes = infer_shapes(network, height, width)  # a clear error when the net cannot run at this size
        head = head_description(network, shapes, height, width, request.decode)
        weights = Path(request.weights) if request.weights else default_weights(path)
        notes = list(network.warnings)
        files = [{"path": str(path), "sha256": sha256_of(path), "bytes": path.stat().st_size}]
        if weights is not None:
            if not weights.is_file():
                raise InputFileError(f"weights file {weights} does not exist")
            model = build_model(network, read_weights(weights, network), request.bn_eps)
            files.append({"path": str(weights), "sha256": sha256_of(weights), "bytes": weights.stat().st_size})
        else:
            model, _ = random_model(network, height, width, 0, request.bn_eps)
            notes.append(f"no weights for {path} (give --weights): random parameters, good for testing the "
                         "pipeline only")
        module = model.eval()
        head_scope = None
        if request.decode:
            module, head_scope = DarknetRows(model, height, width).eval(), DECODE_SCOPE
        for p in module.parameters():
            p.requires_grad_(False)
        example = torch.rand(1, net.channels, height, width)
        stride = max(max(h["stride"]) for h in head["heads"])
        return ExportSource(
            module, example, str(path), files[0]["sha256"], kind="darknet", task="detect",
            names={i: f"class{i}" for i in range(head["nc"])}, stride=int(round(stride)), head_scope=head_scope,
            dynamic=request.dynamic, head=head, resize="letterbox-grey" if net.letter_box else "stretch",
            output_names=output_names(network, request.decode), files=files, notes=notes, names_from_data=True)


def _input_hw(network, request: SourceRequest) -> tuple[int, int]:
    if request.input_shape is not None:
        shape = tuple(request.input_shape)
        if len(shape) != 4 or shape[0] != 1 or shape[1] != network.net.channels:
            raise ModelMismatchError(f"{network.path} takes 1x{network.net.channels}xHxW inputs; got --input-shape "
                                     f"{','.join(map(str, shape))}")
        return int(shape[2]), int(shape[3])
    if request.imgsz:
        return int(request.imgsz), int(request.imgsz)
    return network.net.height, network.net.width
