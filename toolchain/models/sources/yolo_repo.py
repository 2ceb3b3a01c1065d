"""YOLOv5 and YOLOv7 repository checkpoints: the ``.pt`` files those repositories' ``train.py`` saves.

Why a source of its own: such a file is a dict (``model``, ``ema``, ``opt``, ``epoch``...) whose
module is pickled as the repository's own classes (``models.yolo.Model``/``DetectionModel`` with
a ``Detect``, ``IDetect`` or ``IAuxDetect`` head), so it unpickles only where the repository's
``models`` package is importable, its input size lives in ``opt`` (``imgsz`` in YOLOv5,
``img_size`` in YOLOv7), and its outputs are rows with an objectness column. Read as a plain
module it was mis-sized (640 instead of the 416 it was trained at), mis-decoded (the rows read as
Ultralytics' ``(1, 4 + nc, N)``) and saved as a bare module the repositories' ``attempt_load``
cannot read. Here it is loaded as the repositories load it (``ema`` else ``model``, float), exported
with its decode (``yolo-rows`` in the artifact's metadata), pruned with the head's prediction convs
(and YOLOv7's implicit knowledge layers in front of them) kept, and saved back as a checkpoint
dict of the same classes, which ``attempt_load``, ``detect.py``, ``val.py`` and ``export.py`` read.

The repository is found on ``sys.path`` (its root holds ``models/yolo.py``): give it once with
:func:`use_repository` (the CLI's ``--repo DIR``, or ``EDGEPRUNE_REPO``); the PyPI ``yolov5``
package's folder serves as a YOLOv5 repository.

Pruning keeps what must not change, each prediction conv's output (anchors × (5 + nc)); YOLOv7's
``IDetect`` also adds a learnt per-channel constant (``ImplicitA``) to each prediction conv's input,
which loses the same channels as that input (an unwrapped parameter for Torch-Pruning). The graph is
traced with the head returning its prediction convs' raw outputs: traced through the decode, whose
``view``/``permute`` of every map into (anchors, 5 + nc) gives Torch-Pruning a reshape index
mapping to build over every channel (that made yolov5n take 495 s).
"""

from __future__ import annotations

import contextlib
import copy
import os
import pickle
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import nn

from toolchain.core.errors import (
    EdgepruneError,
    InputFileError,
    ModelMismatchError,
    PruningError,
    UnsupportedModelError,
)
from toolchain.core.device import resolve_device
from toolchain.core.fileio import atomic_output, ensure_not_input, sha256_of, staged_folder, zip_compressed_size
from toolchain.models.evaluation import evaluate_source
from toolchain.models.floored_pruner import FlooredPruner
from toolchain.models.importance import create_importance
from toolchain.models.label_free import LabelFreeConfig, recover
from toolchain.models.loading import read_data_yaml
from toolchain.models.model_stats import model_stats, zero_fraction
from toolchain.models.prune_job import PruneReport, Side
from toolchain.models.pruning import PruneConfig
from toolchain.models.repo_training import RepoTrainConfig, train_on_labels
from toolchain.models.sources import register_source
from toolchain.models.sources.base import ExportSource, ModelSource, SourceRequest, is_repo_checkpoint, refuse
from toolchain.models.sparsity import gammas
from toolchain.models.training import TrainResult
from toolchain.models.validator import scores_as_result

REPO_ENV = "EDGEPRUNE_REPO"
REPO_PACKAGES = ("models", "utils")  # the top-level packages a repository's checkpoints unpickle from
HEADS = ("Detect", "IDetect", "IAuxDetect")  # the repositories' detection heads edgeprune keeps the contract of
DEFAULT_IMGSZ = 640


def use_repository(path: str | os.PathLike) -> Path:
    """Make the YOLOv5/YOLOv7 repository at ``path`` importable (its ``models``/``utils`` packages), first on
    ``sys.path``; another repository's packages imported before are forgotten (both name them ``models``).

    Raises:
        InputFileError: ``path`` is not a folder holding ``models/yolo.py``.
    """
    root = Path(path).expanduser().resolve()
    if not (root / "models" / "yolo.py").is_file():
        raise InputFileError(f"--repo {path} is not a YOLOv5/YOLOv7 repository: it has no models/yolo.py "
                             "(give the clone's root folder, or the yolov5 pip package's folder)")
    imported = getattr(sys.modules.get("models"), "__file__", None)
    if imported and Path(imported).resolve().parents[1] != root:  # another repository's models/utils were imported
        for name in [n for n in sys.modules if n.split(".")[0] in REPO_PACKAGES]:
            del sys.modules[name]
    if str(root) in sys.path:
        sys.path.remove(str(root))
    sys.path.insert(0, str(root))
    if (root / "__init__.py").is_file() and str(root.parent) not in sys.path:
        # the yolov5 pip package: checkpoints saved with it pickle its classes as 'yolov5.models...'
        sys.path.append(str(root.parent))
    return root


def _repository_from_environment() -> None:
    if os.environ.get(REPO_ENV):
        use_repository(os.environ[REPO_ENV])


@dataclass
class RepoCheckpoint:
    """A repository checkpoint as the repositories load it."""

    path: Path
    ckpt: dict
    model: nn.Module  # float32, eval mode, not fused
    head: nn.Module
    imgsz: int | None  # from ``opt``
    names: dict = field(default_factory=dict)

    @property
    def nc(self) -> int:
        return int(self.head.nc)

    @property
    def flavour(self) -> str:
        return "YOLOv7" if type(self.head).__name__ != "Detect" else "YOLOv5"


def _opt_imgsz(opt) -> int | None:
    opt = vars(opt) if not isinstance(opt, dict) and opt is not None else (opt or {})
    size = opt.get("imgsz", opt.get("img_size"))
    if isinstance(size, (list, tuple)):
        size = max(size) if size else None
    return int(size) if size else None


def load_repo_checkpoint(path: str | os.PathLike) -> RepoCheckpoint:
    """Load ``path`` as the repositories' ``attempt_load`` does: ``ema`` else ``model``, in float.

    Raises:
        UnsupportedModelError: the repository is not importable (the message names it and ``--repo``);
            the head is not one edgeprune keeps the contract of.
    """
    path = Path(path)
    _repository_from_environment()
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as exc:
        raise UnsupportedModelError(
            f"{path} is a YOLOv5/YOLOv7 repository checkpoint (its model is pickled as the repository's "
            f"{exc.name!r} classes): give the repository with --repo DIR (a clone of ultralytics/yolov5 or "
            f"WongKinYiu/yolov7, or the yolov5 pip package's folder), or set {REPO_ENV}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise InputFileError(f"model file {path} cannot be read: {str(exc).splitlines()[0][:160]}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("ema") or ckpt.get("model"), nn.Module):
        raise UnsupportedModelError(f"{path} pickles the repositories' classes but holds no 'model' or 'ema' module")
    model = copy.deepcopy(ckpt.get("ema") or ckpt["model"]).float().eval()
    layers = getattr(model, "model", None)
    head = layers[-1] if isinstance(layers, nn.Sequential) and len(layers) else None
    if head is None or type(head).__name__ not in HEADS:
        found = type(head).__name__ if head is not None else "no head"
        raise UnsupportedModelError(f"{path}: the repository model ends in {found}; edgeprune keeps the contract of "
                                    f"the {', '.join(HEADS)} heads (detection)")
    names = getattr(model, "names", None) or {}
    names = dict(enumerate(names)) if isinstance(names, (list, tuple)) else dict(names)
    if names and len(names) != int(head.nc):
        raise ModelMismatchError(f"{path}: its head predicts nc={head.nc} classes but it names {len(names)}")
    for p in model.parameters():
        p.requires_grad_(False)
    return RepoCheckpoint(path, ckpt, model, head, _opt_imgsz(ckpt.get("opt")), names or
                          {i: str(i) for i in range(int(head.nc))})


class RowsOutput(nn.Module):
    """The repository model returning only its decoded rows ``(batch, anchors, 5 + nc)``, as its export does."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out


def prediction_convs(head: nn.Module) -> list[nn.Module]:
    """The head's prediction convs (their output channels are the contract: anchors × (5 + nc))."""
    return list(head.m)


def implicit_inputs(head: nn.Module) -> list[tuple[nn.Parameter, int]]:
    """YOLOv7's implicit parameters, each declared with its channel dimension (1): ImplicitA, added to a
    prediction conv's input, is pruned with it; ImplicitM scales a prediction conv's output, which is never
    pruned (declared so Torch-Pruning does not guess, and warn, about it)."""
    return [(ia.implicit, 1) for ia in getattr(head, "ia", [])] + [(im.implicit, 1) for im in getattr(head, "im", [])]


def save_repo_checkpoint(checkpoint: RepoCheckpoint, model: nn.Module, out: str | os.PathLike,
                         note: dict | None = None) -> Path:
    """``model`` saved as the repositories' ``train.py`` saves a checkpoint (fp16 ``model``, no optimizer),
    keeping the source's ``opt``, so ``attempt_load``, ``detect.py``, ``val.py`` and ``export.py`` read it."""
    model = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    payload = {"epoch": -1, "best_fitness": None, "model": model.half(), "ema": None, "updates": None,
               "optimizer": None, "opt": checkpoint.ckpt.get("opt"), "date": datetime.now(timezone.utc).isoformat(),
               "edgeprune": note or {}}
    with atomic_output(out) as tmp:
        torch.save(payload, tmp)
    return Path(out)


@register_source
class YoloRepoSource(ModelSource):
    """YOLOv5/YOLOv7 repository checkpoints (``--repo DIR`` when the repository is not importable)."""

    name = "yolo-repo"
    summary = "YOLOv5/YOLOv7 repository checkpoints (.pt from their train.py), with --repo DIR"
    suffixes = (".pt", ".pth")
    native_validator = False

    def claims(self, path: Path) -> bool:
        return is_repo_checkpoint(Path(path))

    def default_imgsz(self, path: Path) -> tuple[int | None, str]:
        said = _opt_imgsz(_peek_opt(path))
        if said:
            return said, f"the size {path} was trained at (its opt)"
        return DEFAULT_IMGSZ, "the repositories' default: the checkpoint's opt does not say"

    def check_request(self, path: Path, request: SourceRequest, bn_eps_given: bool = False) -> None:
        refuse(path, "a YOLOv5/YOLOv7 repository checkpoint", ["decode"] * request.decode + ["bn_eps"] * bn_eps_given,
               "they are a Darknet cfg's")
        if request.dynamic:
            raise EdgepruneError(f"--dynamic-shape: {path}'s head builds its grid at the size it is exported at; "
                                 "deploy it at a fixed size")

    def prepare(self, path: Path, request: SourceRequest) -> ExportSource:
        loaded = load_repo_checkpoint(path)
        size = request.imgsz or loaded.imgsz or DEFAULT_IMGSZ
        if request.input_shape is not None:
            raise EdgepruneError(f"{path} takes square inputs: give --imgsz, not --input-shape")
        module = copy.deepcopy(loaded.model)
        if hasattr(module, "fuse"):
            module = module.fuse()  # as attempt_load(fuse=True) and export.py run it
        module = RowsOutput(module.eval()).eval()
        example = torch.rand(1, 3, size, size)
        with torch.inference_mode():  # dry run: the head caches its grids, so tracing sees one code path
            module(example)
        stride = int(max(getattr(loaded.model, "stride", torch.tensor([32.0])).tolist()))
        files = [{"path": str(path), "sha256": sha256_of(path), "bytes": Path(path).stat().st_size}]
        return ExportSource(module, example, str(path), files[0]["sha256"], kind=self.name, task="detect",
                            names=loaded.names, stride=stride, head_scope="model.model." + str(len(loaded.model.model) - 1),
                            head={"format": "yolo-rows", "nc": loaded.nc}, files=files,
                            notes=[f"a {loaded.flavour} repository checkpoint, exported with its own decode (rows with "
                                   "objectness)"])

    def evaluate(self, path: Path, data: str, imgsz: int | None = None, batch: int = 16, split: str = "val",
                 weights: str | None = None):
        """The checkpoint run in torch with its own decode, through edgeprune's letterbox, NMS and metric."""
        source = self.prepare(path, SourceRequest(imgsz))
        data_cfg = read_data_yaml(data)
        if data_cfg["nc"] != source.nc:
            raise ModelMismatchError(f"{path} predicts nc={source.nc} classes but {data} has nc={data_cfg['nc']}")
        return scores_as_result(str(path), data, source.input_hw[0], "detect", evaluate_source(source, data, split),
                                data_cfg["names"])

    def prune(self, path: Path, out: Path, cfg, **options):
        return prune_repo_checkpoint(path, out, cfg, **options)

    def finetune(self, path: Path, data: str, out: Path, request, on_epoch=None):
        """On ``data``'s labels with the repository's own loss (:mod:`toolchain.models.repo_training`), or
        without labels, distilled from the model it was pruned from (``--images``)."""
        refuse(path, "a YOLOv5/YOLOv7 repository checkpoint", request.given("burn_in", "weights", "converge",
                                                                               "from_scratch", "cache", "warmup_epochs",
                                                                               "resume"),
               "they are other trainers' options (a repository model's fine-tuning keeps no resumable state)")
        loaded = load_repo_checkpoint(path)
        size = request.imgsz or loaded.imgsz or DEFAULT_IMGSZ
        device = resolve_device(request.device).torch

        def save(model: nn.Module, dest: Path) -> Path:
            return save_repo_checkpoint(loaded, model, dest, loaded.ckpt.get("edgeprune"))

        if request.images:
            teacher = request.teacher
            if teacher in (None, "auto"):
                teacher = (loaded.ckpt.get("edgeprune") or {}).get("source")
                if not teacher or not Path(teacher).is_file():
                    raise ModelMismatchError(f"{path} records no unpruned source that is still here; give --distill "
                                             "TEACHER.pt (the checkpoint it was pruned from)")
            cfg = LabelFreeConfig(epochs=request.epochs, batch=request.batch, seed=request.seed,
                                  lr=request.lr0 or LabelFreeConfig().lr, device=device)
            return recover(loaded.model, load_repo_checkpoint(teacher).model, request.images, out, (size, size),
                           "letterbox", cfg, save, str(teacher), on_epoch)
        if request.teacher not in ("auto", None):
            raise EdgepruneError(f"--distill does not apply to fine-tuning {path} on labels (the repository's loss); "
                                 "distilling from the unpruned model is label-free fine-tuning's (--images DIR)")
        data_cfg = read_data_yaml(data)
        if data_cfg["nc"] != loaded.nc:
            raise ModelMismatchError(f"{path} predicts nc={loaded.nc} classes but {data} has nc={data_cfg['nc']}")
        cfg = RepoTrainConfig(imgsz=size, epochs=request.epochs, batch=request.batch, seed=request.seed,
                              lr0=request.lr0 or RepoTrainConfig(size).lr0, device=device)
        losses: list[tuple[int, float]] = []
        out = Path(out).resolve()
        with staged_folder(out, replace=False) as stage:
            trained, notes = train_on_labels(loaded.model, loaded.head, data, cfg,
                                             lambda epoch, loss: losses.append((epoch, loss)))
            (stage / "weights").mkdir(parents=True, exist_ok=True)
            save(trained, stage / "weights" / "best.pt")
            with atomic_output(stage / "results.csv", suffix=".csv") as tmp:
                tmp.write_text("epoch,loss\n" + "".join(f"{e},{v:.6g}\n" for e, v in losses))
        weights = out / "weights" / "best.pt"
        scores = self.evaluate(weights, data, size)
        return TrainResult(str(weights), str(out), cfg.epochs, scores.map50, scores.map50_95,
                           sum(p.numel() for p in trained.parameters()), notes=tuple(notes))

    def fit_sweep(self, path: Path, settings):
        defaults = type(settings)(data=settings.data)
        refuse(path, "a YOLOv5/YOLOv7 repository checkpoint",
               [n for n in ("weights", "shortcuts", "shortcut_grid", "keep") if getattr(settings, n) != getattr(defaults, n)],
               "they are a Darknet cfg's")
        refuse(path, "a YOLOv5/YOLOv7 repository checkpoint", ["head_ratio"] if settings.head_ratio is not None else [],
               "its head has no inner convolutions, only the prediction convs every prune keeps")
        loaded = load_repo_checkpoint(path)
        nc = read_data_yaml(settings.data)["nc"]
        if nc != loaded.nc:
            raise ModelMismatchError(f"{path} predicts nc={loaded.nc} classes but {settings.data} has nc={nc}")
        return settings if settings.imgsz else replace(settings, imgsz=loaded.imgsz or DEFAULT_IMGSZ)


    def bn_gammas(self, path: Path, weights: str | None = None):
        return gammas(load_repo_checkpoint(path).model)

    def stats(self, path: Path, imgsz: int, weights: str | None = None):
        loaded = load_repo_checkpoint(path)
        return model_stats(loaded.model, torch.zeros(1, 3, imgsz, imgsz))


def _peek_opt(path: Path):
    """``opt`` of a repository checkpoint, or None when the repository is not importable yet."""
    try:
        return load_repo_checkpoint(path).ckpt.get("opt")
    except EdgepruneError:
        return None


@contextlib.contextmanager
def raw_head(head: nn.Module):
    """The head returns its prediction convs' raw outputs while the graph is traced (see the module docstring)."""
    ia = getattr(head, "ia", None)
    im = getattr(head, "im", None)

    def forward(xs):
        outs = []
        for i in range(head.nl):
            x = ia[i](xs[i]) if ia is not None else xs[i]
            x = head.m[i](x)
            outs.append(im[i](x) if im is not None else x)
        return outs

    head.forward = forward
    try:
        yield
    finally:
        del head.forward  # back to the class's forward


def _rows(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return RowsOutput(model.eval())(x)


def prune_repo_checkpoint(path: str | Path, out: str | Path, cfg: PruneConfig, unstructured: bool = False,
                          input_shape=None, latency=None, progress=None, layers: int = 0,
                          evaluate: bool = True) -> PruneReport:
    """Prune the repository checkpoint ``path`` by ``cfg`` into ``out``, saved in the repositories' format.

    Raises:
        PruningError: options that do not apply (unstructured, residual units, per-layer ratios,
            gradient criteria), Torch-Pruning failing, or a changed output contract.
    """
    given_per_layer = cfg.layer_ratios or cfg.head_ratio is not None
    if unstructured or layers or given_per_layer or cfg.steps != 1 and cfg.global_pruning:
        raise PruningError("YOLOv5/YOLOv7 repository checkpoints prune by --ratio (local or --global, --steps); "
                           "--unstructured, --layers, per-block ratios and --head-ratio (their heads have no inner "
                           "convolutions) are for Ultralytics checkpoints")
    if cfg.method == "taylor":
        raise PruningError("--method taylor scores channels with the Ultralytics loss; use l1, l2, lamp or bn")
    if input_shape is not None:
        raise PruningError(f"{path} takes square inputs: give --imgsz, not --input-shape")
    if not 0.0 < cfg.ratio < 1.0:
        raise PruningError(f"pruning ratio must be between 0 and 1 (exclusive), got {cfg.ratio}")
    ensure_not_input(out, path)
    started = time.perf_counter()
    checkpoint = load_repo_checkpoint(path)
    size = cfg.imgsz or checkpoint.imgsz or DEFAULT_IMGSZ
    example = torch.rand(1, 3, size, size)
    model = copy.deepcopy(checkpoint.model).float().eval()
    reference = _rows(copy.deepcopy(model), example)
    before_stats = model_stats(copy.deepcopy(model), example)
    head = model.model[-1]
    for p in model.parameters():
        p.requires_grad_(True)
    try:
        with raw_head(head):
            pruner = FlooredPruner(
                model, example, importance=create_importance(cfg.method), global_pruning=cfg.global_pruning,
                pruning_ratio=cfg.ratio, iterative_steps=cfg.steps, ignored_layers=prediction_convs(head),
                round_to=cfg.round_to, unwrapped_parameters=implicit_inputs(head))
            for step in range(cfg.steps):
                pruner.step()
                if progress:
                    progress(step + 1, cfg.steps)
    except Exception as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise PruningError(f"Torch-Pruning cannot prune {path}: {type(exc).__name__}: {reason}") from exc
    model.zero_grad(set_to_none=True)
    for p in model.parameters():
        p.requires_grad_(False)
    pruned_rows = _rows(model, example)
    if pruned_rows.shape != reference.shape:
        raise PruningError(f"pruning {path} changed its output from {tuple(reference.shape)} to "
                           f"{tuple(pruned_rows.shape)}; this is a bug in edgeprune's protected layers")
    after_stats = model_stats(copy.deepcopy(model), example)
    if after_stats.params == before_stats.params:
        raise PruningError(f"ratio {cfg.ratio} with --round-to {cfg.round_to} removes no channel from {path}; lower "
                           "--round-to or raise --ratio")
    note = {"mode": "structured", "method": cfg.method, "ratio": cfg.ratio, "global": cfg.global_pruning,
            "steps": cfg.steps, "source": str(Path(path).resolve()), "source_sha256": sha256_of(path)}
    with tempfile.TemporaryDirectory(prefix="edgeprune-") as tmp:
        original = save_repo_checkpoint(checkpoint, checkpoint.model, Path(tmp) / "source.pt")
        saved = save_repo_checkpoint(checkpoint, model, out, note)
        before = Side(before_stats.params, before_stats.macs, original.stat().st_size, zip_compressed_size(original),
                      zero_fraction(checkpoint.model))
    after = Side(after_stats.params, after_stats.macs, saved.stat().st_size, zip_compressed_size(saved),
                 zero_fraction(model))
    notes = [f"a {checkpoint.flavour} repository checkpoint: saved as its train.py saves one (model, opt, no "
             "optimizer), which attempt_load, detect.py, val.py and export.py read; the repository's train.py "
             "--weights rebuilds the network from the yaml it keeps (the unpruned widths), so fine-tune it with "
             "`edgeprune finetune`",
             f"pruned in {time.perf_counter() - started:.1f} s"]
    if evaluate and cfg.data:
        source = YoloRepoSource()
        before.map50_95, before.map50 = _scores(source.evaluate(Path(path), cfg.data, size))
        after.map50_95, after.map50 = _scores(source.evaluate(Path(out), cfg.data, size))
    return PruneReport(model=str(path), out=str(out), mode="structured", method=cfg.method, ratio=cfg.ratio,
                       global_pruning=cfg.global_pruning, steps=cfg.steps, round_to=cfg.round_to,
                       input_shape=tuple(example.shape), before=before, after=after, stock_blocks=True,
                       protected_layers=[f"model.{len(model.model) - 1}.m.{i}" for i in range(head.nl)], notes=notes)


def _scores(result) -> tuple[float, float]:
    return result.map50_95, result.map50
