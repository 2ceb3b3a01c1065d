"""PyTorch files: Ultralytics YOLO checkpoints and pickled ``nn.Module`` objects (``.pt``/``.pth``).

Why one source for both: they share a suffix and a loader (:func:`toolchain.models.loading.load_model`),
which tells them apart by content. YOLO models are prepared as Ultralytics' exporter does (BN
fused, head in export mode returning ``(B, 4 + nc, anchors)``), so OpenVINO and ONNX Runtime
see the same graph and ``YOLO(artifact)`` reads the metadata.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from toolchain.core.device import resolve_device
from toolchain.core.errors import EdgepruneError, ModelMismatchError
from toolchain.core.fileio import sha256_of
from toolchain.models.checkpoint import save_model
from toolchain.models.distill import load_teacher, recorded_teacher
from toolchain.models.label_free import LabelFreeConfig, recover
from toolchain.models.evaluation import evaluate_source
from toolchain.models.loading import (
    DEFAULT_IMGSZ,
    check_model_fits_data,
    example_input,
    load_model,
    read_checkpoint,
    read_data_yaml,
    trained_imgsz,
)
from toolchain.models.model_stats import model_stats
from toolchain.models.prune_job import prune_file
from toolchain.models.pruning import PruneConfig
from toolchain.models.sources import register_source
from toolchain.models.sources.base import ExportSource, ModelSource, SourceRequest, is_repo_checkpoint, refuse
from toolchain.models.sparsity import SparsityConfig, gammas, sparsify
from toolchain.models.training import AUTO_TEACHER, TrainConfig, finetune, train
from toolchain.models.validator import evaluate, scores_as_result


def _yolo_for_export(model: nn.Module, dynamic: bool) -> tuple[nn.Module, str]:
    from ultralytics.nn.modules.head import Classify, Detect

    module = copy.deepcopy(model).float().eval()
    for p in module.parameters():
        p.requires_grad_(False)
    module = module.fuse(verbose=False)
    head_scope = None
    for name, m in module.named_modules():
        if isinstance(m, Detect):
            m.export, m.format, m.dynamic = True, "onnx", dynamic
            head_scope = name
        elif isinstance(m, Classify):  # export mode: the probabilities alone, as Ultralytics' exports give
            m.export = True
    return module, head_scope


class RawHeadOutputs(nn.Module):
    """A YOLO model whose output is the head's raw maps ``(B, 4*reg_max + nc [+ nk], anchors)``.

    Why: the decoded output mixes pixel-scale boxes with probabilities, so "equal to 1e-4"
    means different things for its rows; the raw conv outputs are the network itself, and
    this wrapper lets a backend's numerics be checked on them.
    """

    def __init__(self, model: nn.Module, head: nn.Module):
        super().__init__()
        self.model = model
        # The head's raw branch outputs, whatever train/eval mode exporters put the model in.
        head.forward = lambda feats: head.forward_head(feats, **head.one2many)

    def forward(self, x):
        out = self.model(x)
        return torch.cat([out[k] for k in ("boxes", "scores", "kpts") if k in out], 1)


ULTRALYTICS_ONLY = ("burn_in", "weights")


def _train_config(path: Path, request, epochs: int | None = None):
    """The Ultralytics trainer's settings for ``request`` (image size: given, else the checkpoint's)."""

    imgsz = request.imgsz or PyTorchSource().default_imgsz(path)[0]
    return TrainConfig(epochs=epochs or request.epochs, imgsz=imgsz, batch=request.batch, workers=request.workers,
                       seed=request.seed, lr0=request.lr0, device=request.device, cache=request.cache,
                       warmup_epochs=request.warmup_epochs, resume=request.resume)


def _refuse_darknet_options(path: Path, request) -> None:
    refuse(path, "an Ultralytics model", request.given(*ULTRALYTICS_ONLY), "they are a Darknet cfg's")


def _finetune_label_free(path: Path, out: Path, request, on_epoch=None):
    """``finetune --images``: the model learns its teacher's outputs on a folder of images (no labels).

    The teacher is the one given, else (``auto``) the unpruned checkpoint ``prune`` recorded.
    """
    refuse(path, "fine-tuning without labels", request.given("resume"),
           "its runs are minutes long and keep no state between epochs; start again")
    loaded = load_model(path)
    teacher = request.teacher
    if teacher == AUTO_TEACHER:
        teacher, why = recorded_teacher(loaded) if loaded.is_yolo else (None, f"{path} is a plain module")
        if teacher is None:
            raise ModelMismatchError(f"--images learns a teacher's outputs, and {why}: give --distill TEACHER.pt "
                                     "(the model it was pruned from)")
    teacher_model = load_teacher(teacher, loaded.model) if loaded.is_yolo else load_model(teacher).model.float().eval()
    if not loaded.is_yolo and not request.imgsz:
        raise EdgepruneError(f"{path} is a plain nn.Module: give --imgsz, the square input the images are fitted into")
    size = request.imgsz or PyTorchSource().default_imgsz(path)[0]
    cfg = LabelFreeConfig(epochs=request.epochs, batch=request.batch, seed=request.seed,
                          lr=request.lr0 or LabelFreeConfig().lr, device=resolve_device(request.device).torch)
    note = loaded.ckpt.get("edgeprune") if isinstance(loaded.ckpt, dict) else None
    return recover(loaded.model, teacher_model, request.images, out, (size, size), "letterbox", cfg,
                   lambda model, dest: save_model(loaded, model, dest, note), str(teacher), on_epoch)


class _UltralyticsOperations:
    """Training, sparsity training, evaluation and sweep points of Ultralytics checkpoints (and yaml models)."""

    def train(self, path: Path, data: str, out: Path, request, on_epoch=None):
        _refuse_darknet_options(path, request)
        refuse(path, "training", request.given("teacher", "distill_weight"), "distillation is `finetune`'s")
        return train(data, str(path), out, _train_config(path, request), converge=request.converge,
                     scratch=request.from_scratch)

    def finetune(self, path: Path, data: str, out: Path, request, on_epoch=None):
        _refuse_darknet_options(path, request)
        refuse(path, "fine-tuning", request.given("converge", "from_scratch"), "they are `train`'s")
        if request.images:
            return _finetune_label_free(path, out, request, on_epoch)
        return finetune(str(path), data, out, _train_config(path, request), request.teacher, request.distill_weight)

    def sparsify(self, path: Path, data: str, out: Path, request, on_epoch=None):
        _refuse_darknet_options(path, request.train)
        refuse(path, "an Ultralytics model", ["s"] if request.strength is not None else [],
               "it is a Darknet cfg's L1 strength; give the prune to prepare for with --ratio")
        prune = PruneConfig(ratio=0.5 if request.ratio is None else request.ratio, method=request.method or "bn",
                            global_pruning=request.global_pruning,
                            round_to=None if request.round_to == 1 else (request.round_to or 8),
                            head_ratio=request.head_ratio)
        hold = 0.4 if request.hold is None else request.hold
        return sparsify(str(path), data, out, SparsityConfig(prune=prune, hold=hold, layers=request.layers,
                                                             train=_train_config(path, request.train)),
                        on_epoch=on_epoch)

    def evaluate(self, path: Path, data: str, imgsz: int | None = None, batch: int = 16, split: str = "val",
                 weights: str | None = None):
        """Ultralytics models through the Ultralytics validator; a plain module through edgeprune's own loop,
        which reads its output as detections ``(batch, 4 + nc, anchors)`` or refuses it in one sentence."""
        if Path(path).suffix.lower() in (".pt", ".pth") and not isinstance(read_checkpoint(path), dict):
            shape = (1, 3, int(imgsz), int(imgsz)) if imgsz else None  # eval's --imgsz: a square image input
            source = self.prepare(path, SourceRequest(imgsz, input_shape=shape))
            return scores_as_result(str(path), data, source.input_hw[0], "detect",
                                    evaluate_source(source, data, split), read_data_yaml(data)["names"])
        return evaluate(str(path), data, imgsz=imgsz, batch=batch, split=split)

    def prune(self, path: Path, out: Path, cfg, **options):
        return prune_file(str(path), str(out), cfg, **options)

    def bn_gammas(self, path: Path, weights: str | None = None):
        return gammas(load_model(path).model)

    def stats(self, path: Path, imgsz: int, weights: str | None = None):
        loaded = load_model(path)
        return model_stats(loaded.model, example_input(loaded, imgsz, None))

    def exports_with_ultralytics(self, path: Path) -> bool:
        return Path(path).suffix.lower() in (".pt", ".pth") and isinstance(read_checkpoint(path), dict)

    def fit_sweep(self, path: Path, settings):
        defaults = type(settings)(data=settings.data)
        refuse(path, "an Ultralytics checkpoint", [n for n in ("weights", "shortcuts", "shortcut_grid", "keep")
                                                   if getattr(settings, n) != getattr(defaults, n)],
               "they are a Darknet cfg's")
        loaded = load_model(path)
        if settings.head_ratio is not None and not loaded.is_yolo:
            raise EdgepruneError(f"--head-ratio does not apply to {path}: it has no Ultralytics task head")
        check_model_fits_data(loaded, settings.data)
        return settings if settings.imgsz else replace(settings, imgsz=loaded.train_imgsz or DEFAULT_IMGSZ)



@register_source
class PyTorchSource(_UltralyticsOperations, ModelSource):
    name = "pytorch"
    summary = "Ultralytics checkpoints and pickled torch modules, .pt/.pth (and Ultralytics model yamls to train)"
    suffixes = (".pt", ".pth", ".yaml", ".yml")
    native_validator = True

    def claims(self, path: Path) -> bool:
        return super().claims(path) and not is_repo_checkpoint(Path(path))  # the yolo-repo source's

    def check_request(self, path: Path, request: SourceRequest, bn_eps_given: bool = False) -> None:
        refuse(path, "a torch model", ["decode"] * request.decode + ["bn_eps"] * bn_eps_given,
               "they are a Darknet cfg's (its decode, its BatchNorm epsilon)")

    def default_imgsz(self, path: Path) -> tuple[int | None, str]:
        if Path(path).suffix.lower() in (".yaml", ".yml"):  # a model built from scratch: the trainer's default
            return DEFAULT_IMGSZ, "Ultralytics default for a model built from a yaml"
        ckpt = read_checkpoint(path)
        if not isinstance(ckpt, dict):  # a pickled nn.Module: its size comes from --input-shape
            return None, ""
        said = trained_imgsz(ckpt)
        why = f"the size {path} was trained at" if said else "Ultralytics default: the checkpoint does not say"
        return said or DEFAULT_IMGSZ, why

    def prepare(self, path: Path, request: SourceRequest) -> ExportSource:
        loaded = load_model(path)
        example = example_input(loaded, request.imgsz, request.input_shape)
        files = [{"path": str(path), "sha256": sha256_of(path), "bytes": Path(path).stat().st_size}]
        if not loaded.is_yolo:
            return ExportSource(loaded.model.eval(), example, str(path), files[0]["sha256"], kind="torch", files=files)
        example = torch.rand_like(example)  # images are in [0, 1]
        module, head_scope = _yolo_for_export(loaded.model, request.dynamic)
        kpt = getattr(module.model[-1], "kpt_shape", None)
        if request.raw_head:
            module = RawHeadOutputs(module, module.model[-1])
        with torch.inference_mode():  # dry run: the head caches its anchors, so tracing sees one code path
            module(example)
        stride = int(max(getattr(loaded.model, "stride", torch.tensor([32])).tolist()))
        return ExportSource(module, example, str(path), files[0]["sha256"], kind="ultralytics", task=loaded.task,
                            names=loaded.names, stride=stride, head_scope=head_scope,
                            kpt_shape=list(kpt) if kpt else None, dynamic=request.dynamic, files=files,
                            runs_in_ultralytics=True)
