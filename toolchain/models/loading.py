"""Load the models edgeprune works on, and check they fit the data they are used with.

Why: the failures users meet first are loading failures: a state_dict without its
code, a checkpoint whose class count does not match the data set, a corrupt file. Each gets
one sentence naming the file and the expected and actual value, instead of a wall of
size-mismatch errors.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from torch import nn

from toolchain.core.errors import InputFileError, ModelMismatchError, UnsupportedModelError, library_reason
from toolchain.models.contract import check_prunable


@dataclass
class LoadedModel:
    """A model plus what edgeprune needs to know about it.

    Attributes:
        path: file it came from.
        kind: ``"ultralytics"`` (a YOLO checkpoint) or ``"torch"`` (a pickled ``nn.Module``).
        model: the float32 module, in eval mode; a private copy, safe to modify.
        ckpt: the checkpoint dict for Ultralytics files (train args etc.), else empty.
        task: Ultralytics task (``detect``, ``pose``, ``segment``, ``obb``, ``classify``), or ``"module"``.
        nc: class count for Ultralytics models, else None.
        names: class names for Ultralytics models.
        train_imgsz: the image size the checkpoint was trained at (its ``train_args``; 640,
            Ultralytics' default, when absent), None for plain modules.
    """

    path: str
    kind: str
    model: nn.Module
    ckpt: dict = field(default_factory=dict)
    task: str = "module"
    nc: int | None = None
    names: dict = field(default_factory=dict)
    train_imgsz: int | None = None
    notes: tuple[str, ...] = ()  # what the user should know about how the file was read

    @property
    def is_yolo(self) -> bool:
        return self.kind == "ultralytics"


SUPPORTED_TASKS = ("detect", "pose", "segment", "obb", "classify")
DEFAULT_IMGSZ = 640  # Ultralytics' default training size, used when a checkpoint does not say

# Module paths renamed since Ultralytics 8.0, and pickled path classes of the other OS:
# the same aliases Ultralytics' own loader installs, so checkpoints saved by older 8.x
# versions or on Windows unpickle here without reaching the network.
_RENAMED_MODULES = {
    "ultralytics.yolo.utils": "ultralytics.utils",
    "ultralytics.yolo.v8": "ultralytics.models.yolo",
    "ultralytics.yolo.data": "ultralytics.data",
}
_RENAMED_ATTRIBUTES = {
    "ultralytics.nn.modules.block.Silence": "torch.nn.Identity",
    "ultralytics.nn.tasks.YOLOv10DetectionModel": "ultralytics.nn.tasks.DetectionModel",
    "ultralytics.utils.loss.v10DetectLoss": "ultralytics.utils.loss.E2EDetectLoss",
    "pathlib.WindowsPath": "pathlib.PosixPath",
}


def _torch_load(path: Path):
    from ultralytics.nn.tasks import temporary_modules

    attributes = dict(_RENAMED_ATTRIBUTES)
    if os.name == "nt":
        attributes = {k: v for k, v in attributes.items() if not k.startswith("pathlib.")}
        attributes["pathlib.PosixPath"] = "pathlib.WindowsPath"
    with temporary_modules(modules=_RENAMED_MODULES, attributes=attributes):
        return torch.load(path, map_location="cpu", weights_only=False)


def read_checkpoint(path: str | os.PathLike):
    """The unpickled content of a ``.pt`` file (raises :class:`InputFileError` when unreadable)."""
    return _read_pickle(Path(path))


def trained_imgsz(ckpt: dict) -> int | None:
    """The square size ``train_args['imgsz']`` of a checkpoint says, or None when it says none."""
    value = (ckpt.get("train_args") or {}).get("imgsz") if isinstance(ckpt, dict) else None
    if isinstance(value, (list, tuple)) and value:
        value = max(int(v) for v in value)
    try:
        value = int(value)
    except (TypeError, ValueError):
        return None
    return value if value >= 32 else None


def checkpoint_imgsz(ckpt: dict) -> int:
    """The square size a checkpoint was trained at, else Ultralytics' default 640."""
    return trained_imgsz(ckpt) or DEFAULT_IMGSZ


def _read_pickle(path: Path):
    if not path.exists():
        raise InputFileError(f"model file {path} does not exist")
    if path.is_dir():
        raise InputFileError(f"model path {path} is a folder; expected a .pt file")
    if path.stat().st_size == 0:
        raise InputFileError(f"model file {path} is empty (0 bytes)")
    try:
        return _torch_load(path)
    except ModuleNotFoundError as exc:
        raise InputFileError(f"model file {path} needs the Python module {exc.name!r}, which is not installed") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types for damaged files
        raise InputFileError(f"model file {path} is not a readable PyTorch checkpoint ({_damage(path, exc)})") from None


def _damage(path: Path, exc: Exception) -> str:
    """What is wrong with an unreadable checkpoint, in words (torch's own text cites miniz or pickle opcodes)."""
    import zipfile

    head = path.read_bytes()[:4]
    if head.startswith(b"PK"):
        if not zipfile.is_zipfile(path):
            return f"a torch.save zip archive cut short at {path.stat().st_size} bytes; copy it again"
        return f"a zip archive torch cannot read: {library_reason(exc)}"
    if head[:1] == b"\x80":
        return "a pickle cut short or damaged; copy it again"
    return f"neither a torch.save zip archive nor a pickle (it starts with {head!r})"


def _yolo_head(model: nn.Module):
    from ultralytics.nn.modules.head import Classify, Detect

    heads = [m for m in model.modules() if isinstance(m, (Detect, Classify))]
    return heads[-1] if heads else None


def _head_nc(head: nn.Module) -> int:
    from ultralytics.nn.modules.head import Classify

    return int(head.linear.out_features) if isinstance(head, Classify) else int(head.nc)


def _check_yolo_consistency(path: Path, model: nn.Module) -> tuple[int, tuple[str, ...]]:
    """nc (the head's) after checking the head and the names agree, and what to note about the yaml.

    A yaml whose ``nc`` differs from the head's is read by the head, with a note: Ultralytics'
    released pose checkpoints keep the 80-class yaml of the detector they came from with a
    1-class head, and stock Ultralytics loads and runs them by their head.
    """
    head = _yolo_head(model)
    if head is None:
        raise UnsupportedModelError(
            f"{path} is an Ultralytics {type(model).__name__} without a detection or classification head; "
            f"edgeprune supports {', '.join(SUPPORTED_TASKS)} checkpoints"
        )
    nc = _head_nc(head)
    names = getattr(model, "names", None) or {}
    if names and len(names) != nc:
        raise ModelMismatchError(f"{path} is inconsistent: its head predicts nc={nc} classes but it names {len(names)}")
    yaml_nc = (getattr(model, "yaml", None) or {}).get("nc")
    if yaml_nc is not None and int(yaml_nc) != nc:
        return nc, (f"{path}: its architecture yaml says nc={yaml_nc} but its head predicts nc={nc}; read by its "
                    f"head (nc={nc}), as Ultralytics runs it",)
    return nc, ()


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Load an Ultralytics checkpoint or a pickled ``nn.Module`` from ``path``.

    The file is only read; the returned model is a float32 copy in eval mode.

    Raises:
        InputFileError: missing, empty or unreadable file.
        UnsupportedModelError: the file holds something edgeprune cannot prune (a state_dict,
            a non-detection Ultralytics model, an arbitrary object).
        ModelMismatchError: an Ultralytics checkpoint whose parts disagree on the class count.
    """
    from ultralytics.nn.tasks import BaseModel, guess_model_task

    path = Path(path)
    obj = _read_pickle(path)
    if isinstance(obj, dict) and isinstance(obj.get("ema") or obj.get("model"), nn.Module):
        ckpt, module = obj, (obj.get("ema") or obj.get("model"))
    elif isinstance(obj, nn.Module):
        ckpt, module = {}, obj
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UnsupportedModelError(
            f"{path} holds a state_dict ({len(obj)} tensors) without the model's code; "
            "save the whole module with torch.save(model, path) or pass an Ultralytics checkpoint"
        )
    else:
        raise UnsupportedModelError(
            f"{path} holds a {type(obj).__name__}, not an nn.Module or an Ultralytics checkpoint"
        )
    module = copy.deepcopy(module).float().eval()  # checkpoints store fp16 weights
    if isinstance(module, BaseModel):
        check_prunable(module, str(path))
        nc, notes = _check_yolo_consistency(path, module)
        task = guess_model_task(module)
        if task not in SUPPORTED_TASKS:
            raise UnsupportedModelError(
                f"{path} is an Ultralytics {task} model; edgeprune supports {', '.join(SUPPORTED_TASKS)}"
            )
        _update_legacy_modules(module)
        names = dict(getattr(module, "names", {}) or {i: str(i) for i in range(nc)})
        return LoadedModel(str(path), "ultralytics", module, ckpt, task, nc, names, checkpoint_imgsz(ckpt), notes)
    return LoadedModel(str(path), "torch", module)


def _update_legacy_modules(model: nn.Module) -> None:
    """Attributes newer Ultralytics code reads but older pickles lack (as Ultralytics' loader does)."""
    if not hasattr(model, "stride"):
        model.stride = torch.tensor([32.0])
    for m in model.modules():
        if isinstance(m, nn.Upsample) and not hasattr(m, "recompute_scale_factor"):
            m.recompute_scale_factor = None


def read_data_yaml(path: str | os.PathLike) -> dict:
    """Read a YOLO ``data.yaml`` and return it with ``nc`` and ``names`` (as a dict) filled in."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"data file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputFileError(f"data file {path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or "val" not in data:
        raise InputFileError(f"data file {path} is not a YOLO data.yaml (expected keys 'train', 'val', 'names')")
    names = data.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if names is None and "nc" in data:
        names = {i: str(i) for i in range(int(data["nc"]))}
    if not names:
        raise InputFileError(f"data file {path} defines no class names ('names' or 'nc')")
    data["names"] = names
    data["nc"] = int(data.get("nc", len(names)))
    if data["nc"] != len(names):
        raise InputFileError(f"data file {path} says nc={data['nc']} but lists {len(names)} names")
    return data


def check_model_fits_data(loaded: LoadedModel, data_path: str | os.PathLike) -> dict:
    """Raise unless a detector's class count equals the data set's; return the data dict."""
    data = read_data_yaml(data_path)
    if loaded.is_yolo and loaded.nc != data["nc"]:
        raise ModelMismatchError(
            f"{loaded.path} predicts nc={loaded.nc} classes but {data_path} has nc={data['nc']}; "
            "use the data set the model was trained on, or retrain with this one"
        )
    return data


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` → ``(1, 3, 224, 224)``; raises ValueError with a readable message."""
    try:
        dims = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise ValueError(f"input shape {text!r} is not a comma-separated list of integers, e.g. 1,3,224,224") from None
    if len(dims) < 2 or any(d < 1 for d in dims):
        raise ValueError(f"input shape {text!r} needs at least two positive dimensions, e.g. 1,3,224,224")
    return dims


def check_stride(imgsz: int | None, stride: int = 32, option: str = "--imgsz") -> None:
    """Refuse a size the network cannot take as it is (YOLO: a multiple of its largest stride)."""
    if imgsz is not None and imgsz % stride:
        raise ModelMismatchError(f"{option} must be a multiple of {stride} (the model's stride), got {imgsz}; "
                                 f"try {max(stride, round(imgsz / stride) * stride)}")


def example_input(loaded: LoadedModel, imgsz: int | None, input_shape: tuple[int, ...] | None) -> torch.Tensor:
    """A random input for tracing: ``1x3xSxS`` for YOLO, ``input_shape`` for plain modules.

    ``imgsz`` None means the size the checkpoint was trained at (640 when it does not say).
    """
    if loaded.is_yolo:
        if input_shape is not None:  # an option that would be ignored is refused
            raise ModelMismatchError(f"--input-shape and non-square --imgsz are for plain nn.Module files and Darknet "
                                     f"cfgs; {loaded.path} is an Ultralytics checkpoint: give one square --imgsz")
        imgsz = imgsz or loaded.train_imgsz or DEFAULT_IMGSZ
        check_stride(imgsz)
        return torch.randn(1, 3, imgsz, imgsz)
    if input_shape is None:
        raise ModelMismatchError(
            f"{loaded.path} is a plain nn.Module ({type(loaded.model).__name__}); pass --input-shape, e.g. 1,3,224,224"
        )
    x = torch.randn(*input_shape)
    try:
        with torch.no_grad():
            loaded.model(x)
    except Exception as exc:
        reason = str(exc).splitlines()[0][:160]
        raise ModelMismatchError(
            f"{loaded.path} does not accept an input of shape {tuple(input_shape)} ({reason})"
        ) from None
    return x
