"""Which Ultralytics families and tasks edgeprune handles, measured: the README's support table.

Usage:
    .venv/bin/python benchmarks/families_table.py [--out benchmarks/families_table.md] [--only yolo26n]
        [--imgsz 640] [--deploy-imgsz 256]

For every (family, task, yaml) of :mod:`toolchain.models.zoo`, on an untrained model built offline
from the shipped yaml (3 classes): prune at 0.5 local and at 0.5 global (L1, round-to 8) at
``--imgsz`` and report the MACs cut; reload the local result in a Python where edgeprune cannot
be imported; deploy it to ONNX Runtime and OpenVINO FP32 (at ``--deploy-imgsz``, to keep the
run short) and report the relative raw-output fidelity; run the KV260 DPU preflight and report
its expected subgraph count and CPU fallbacks. RT-DETR is listed with the sentence it is refused with.
Each cell says what happened; nothing is assumed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_RELOAD = r"""
import sys
for name in ("toolchain", "targets", "cfg_codegen", "edgeprune"):
    sys.modules[name] = None
import numpy as np
from ultralytics import YOLO
YOLO(sys.argv[1]).predict(np.zeros((128, 128, 3), np.uint8), imgsz=128, verbose=False)
"""


def _cell(fn):
    """Run ``fn``; its text, or the first line of the error it raised."""
    try:
        return fn()
    except Exception as exc:  # the table reports failures instead of stopping
        return f"fails: {type(exc).__name__}: {str(exc).splitlines()[0][:90] if str(exc) else ''}"


def row(family: str, task: str, yaml_name: str, imgsz: int, deploy_imgsz: int, tmp: Path) -> list[str]:
    from targets.base import ExportConfig
    from toolchain.pipelines.deploy import deploy
    from toolchain.models.checkpoint import save_model
    from toolchain.models.loading import LoadedModel
    from targets.vitis.preflight import preflight
    from toolchain.models.pruning import PruneConfig
    from toolchain.models.prune_job import prune_file
    from toolchain.models.zoo import build

    model, _ = build(yaml_name)
    src = tmp / f"{yaml_name[:-5]}.pt"
    save_model(LoadedModel(str(src), "ultralytics", model, {}), model, src)
    local_out, global_out = tmp / f"{yaml_name[:-5]}-l.pt", tmp / f"{yaml_name[:-5]}-g.pt"

    def pruned(out, global_pruning):
        def run():
            rep = prune_file(str(src), str(out), PruneConfig(ratio=0.5, global_pruning=global_pruning, imgsz=imgsz))
            return f"{rep.before.macs / 1e9:.2f} → {rep.after.macs / 1e9:.2f} G (−{1 - rep.after.macs / rep.before.macs:.0%})"
        return run

    def reload():
        proc = subprocess.run([sys.executable, "-c", _RELOAD, str(local_out)], capture_output=True, text=True, cwd="/")
        return "yes" if proc.returncode == 0 else f"fails: {proc.stderr.strip().splitlines()[-1][:90]}"

    def exported(target):
        def run():
            res = deploy(target, str(local_out), tmp / f"{yaml_name[:-5]}-{target}",
                         ExportConfig(precision="fp32", imgsz=deploy_imgsz), evaluate=False)
            return f"yes ({res.record['fidelity']['max_rel_diff']:.0e})"
        return run

    def dpu():
        rep = preflight(str(local_out), "kv260", deploy_imgsz).to_json()["summary"]
        return (f"{rep['expected_dpu_subgraphs']} subgraphs, {rep['cpu_fallbacks_backbone_neck']}+"
                f"{rep['cpu_fallbacks_head']} CPU ops")

    cells = [family, task, f"`{yaml_name}`", _cell(pruned(local_out, False)), _cell(pruned(global_out, True))]
    if not local_out.exists():
        return cells + ["-"] * 4
    return cells + [_cell(reload), _cell(exported("onnx")), _cell(exported("openvino")), _cell(dpu)]


def trained_row(family: str, data: str, ckpt_dir: Path, tmp: Path) -> list[str]:
    """One family from its short-trained checkpoint (``make family-checkpoints``), at the size it was trained at."""
    import json

    from targets.base import ExportConfig
    from toolchain.pipelines.deploy import deploy
    from toolchain.models.pruning import PruneConfig
    from toolchain.models.prune_job import prune_file
    from toolchain.models.zoo import detect_yaml

    src = ckpt_dir / f"{Path(detect_yaml(family)).stem}.pt"
    if not src.exists():
        return [family, f"missing ({src}; run `make family-checkpoints`)"] + ["-"] * 5
    card = json.loads(src.with_suffix(".json").read_text())
    recipe = card["recipe"]
    local_out, global_out = tmp / f"{src.stem}-tl.pt", tmp / f"{src.stem}-tg.pt"

    def pruned(out, global_pruning):
        def run():
            rep = prune_file(str(src), str(out), PruneConfig(ratio=0.5, global_pruning=global_pruning))
            return f"{rep.before.macs / 1e9:.2f} → {rep.after.macs / 1e9:.2f} G (−{1 - rep.after.macs / rep.before.macs:.0%})"
        return run

    def reload():
        proc = subprocess.run([sys.executable, "-c", _RELOAD, str(local_out)], capture_output=True, text=True, cwd="/")
        return "yes" if proc.returncode == 0 else f"fails: {proc.stderr.strip().splitlines()[-1][:90]}"

    def onnx():
        pruned = deploy("onnx", str(local_out), tmp / f"{src.stem}-tonnx", ExportConfig(precision="fp32"),
                        evaluate=False).record
        # the trained checkpoint's own artifact: a pruned model without fine-tuning scores ~0, which proves nothing
        rec = deploy("onnx", str(src), tmp / f"{src.stem}-tonnx-trained", ExportConfig(precision="fp32", data=data)).record
        acc = rec["accuracy"]
        return (f"pruned: yes ({pruned['fidelity']['max_rel_diff']:.0e}); trained checkpoint's artifact mAP50 "
                f"{acc['artifact']['map50']:.3f} vs torch {acc['torch_fp32']['map50']:.3f}")

    cells = [family, f"`{src.name}` ({recipe['epochs']} epochs at {recipe['imgsz']})",
             f"{card['map50']:.3f} / {card['map50_95']:.3f}", _cell(pruned(local_out, False)),
             _cell(pruned(global_out, True))]
    if not local_out.exists():
        return cells + ["-"] * 2
    return cells + [_cell(reload), _cell(onnx)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="Also write the Markdown table here.")
    parser.add_argument("--only", default=None, help="Only yaml names containing this text.")
    parser.add_argument("--imgsz", type=int, default=640, help="Size for pruning and MAC counting.")
    parser.add_argument("--deploy-imgsz", type=int, default=256, help="Size for the deploys and the preflight.")
    parser.add_argument("--trained", type=Path, default=None,
                        help="Folder of `make family-checkpoints`: add a table of the trained detect checkpoints.")
    parser.add_argument("--data", default=None, help="The data.yaml they were trained on (with --trained).")
    parser.add_argument("--skip-yaml", action="store_true", help="Only the trained table.")
    args = parser.parse_args()

    import ultralytics

    from toolchain.models.loading import load_model
    from toolchain.models.zoo import REFUSED, matrix

    header = ["family", "task", "yaml", f"prune 0.5 local (MACs at {args.imgsz})", "prune 0.5 global",
              "reloads stock", f"ONNX ({args.deploy_imgsz}, rel. fidelity)", "OpenVINO", "KV260 preflight (as is)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    started = time.time()
    if args.skip_yaml:
        lines = []
    with tempfile.TemporaryDirectory(prefix="edgeprune-families-") as tmp:
        for family, task, yaml_name in [] if args.skip_yaml else matrix():
            if args.only and args.only not in yaml_name:
                continue
            cells = row(family, task, yaml_name, args.imgsz, args.deploy_imgsz, Path(tmp))
            lines.append("| " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
        for family, yaml_name in {} if args.skip_yaml else REFUSED.items():
            from ultralytics import RTDETR

            from toolchain.models.checkpoint import save_model
            from toolchain.models.loading import LoadedModel

            path = Path(tmp) / "refused.pt"
            model = RTDETR(yaml_name).model
            save_model(LoadedModel(str(path), "ultralytics", model, {}), model, path)
            try:
                load_model(path)
                sentence = "loads (unexpected)"
            except Exception as exc:
                sentence = str(exc).replace(str(path), "the checkpoint")
            lines.append(f"| {family} | detect | `{yaml_name}` | refused: {sentence} |" + " |" * (len(header) - 4))
            print(lines[-1], flush=True)
        if args.trained:
            from toolchain.models.zoo import FAMILIES

            trained_header = ["family", "trained checkpoint", "mAP50 / mAP50-95", "prune 0.5 local (its own size)",
                              "prune 0.5 global", "reloads stock", "ONNX FP32 (rel. fidelity of the 0.5 local; mAP of the trained checkpoint's artifact)"]
            lines += ["", "From short-trained detect checkpoints (trained weights and activation magnitudes):", "",
                      "| " + " | ".join(trained_header) + " |", "|" + "---|" * len(trained_header)]
            for family in FAMILIES:
                if args.only and args.only not in family:
                    continue
                lines.append("| " + " | ".join(trained_row(family, args.data, args.trained, Path(tmp))) + " |")
                print(lines[-1], flush=True)
    footer = (f"\nUltralytics {ultralytics.__version__}; yaml rows: untrained models from the shipped yaml, 3 classes"
              + ("; trained rows: `make family-checkpoints` on the synthetic set" if args.trained else "")
              + f"; {time.time() - started:.0f} s on this machine.")
    print(footer)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n" + footer + "\n")


if __name__ == "__main__":
    main()
