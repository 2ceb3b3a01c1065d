"""edgeprune's recipes against what a user would pick instead: Ultralytics' own best export of the unpruned model.

Usage:
    .venv/bin/python benchmarks/vs_ultralytics.py --baseline assets/yolov8n-synth.pt --data DATA.yaml \\
        --recipe "pruned 0.3 + 20 ep=demo-run/finetune/weights/best.pt" [--recipe NAME=CKPT ...] \\
        [--imgsz 256] [--rounds 2] [--seconds 10] [--out table.md]

Built in this run: Ultralytics' OpenVINO exports of the unpruned baseline at FP32, FP16 and
INT8 (its own exporter, calibrated on DATA), and edgeprune's FP32 and INT8 IRs of every recipe
checkpoint. Measured in this run, in interleaved rounds (every artifact once per round, then
again): OpenVINO's own benchmark_app as the independent referee (device CPU, batch 1, inference
only, fed a real validation image as the models take it, latency hint with 1 request and
throughput hint with the plugin's optimum, the precision the plugin picks), and the Ultralytics
validator's mAP50-95 on each artifact. Each speed is divided by the fastest Ultralytics export
under the same hint; the drop is in mAP50-95 points against that fastest export's own mAP50-95
(latency hint), by the same validator.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HINTS = ("latency", "throughput")


def referee_input(data: str, imgsz: int, folder: Path) -> Path:
    """The first validation image, letterboxed and scaled to [0, 1] as the models were trained, as a .npy.

    Why not benchmark_app's own fill: it is uniform noise in [0, 255], outside the [0, 1] a YOLO IR
    takes, and the IR's run time depends on the values. Measured on the 2-core AMX Xeon, Ultralytics'
    FP32 IR of yolov8n at 416 executed bf16, latency hint, benchmark_app medians: 5.50-5.61 ms on its
    own fill against 4.40 ms on this image (+25 %); in process, the 0.7-pruned IR 2.94 ms on [0, 255]
    noise against 2.72 ms on [0, 1] noise (+8 %). The fill made the unpruned base look slower than it
    runs on images, and every ratio to it larger.
    """
    import cv2
    import numpy as np

    from toolchain.core.prepost import letterbox, to_input
    from toolchain.models.imagedata import image_files

    image_path = image_files(data, "val")[0]
    image = cv2.imread(str(image_path))
    if image is None:
        raise RuntimeError(f"{image_path}: not an image OpenCV can read")
    path = folder / "referee-input.npy"
    np.save(path, to_input([letterbox(image, imgsz)[0]]))
    return path


def benchmark_app(xml: Path, hint: str, seconds: float, input_npy: Path) -> dict:
    exe = Path(sys.executable).with_name("benchmark_app")
    cmd = [str(exe), "-m", str(xml), "-d", "CPU", "-hint", hint, "-t", str(int(seconds)),
           # -ip f32: with -i, benchmark_app would otherwise make the input uint8 (an image) and convert it in the graph
           "-ip", "f32", "-i", str(input_npy)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    fps = re.search(r"Throughput:\s+([\d.]+)\s+FPS", out)
    precision = re.search(r"INFERENCE_PRECISION_HINT:\s+<Type: '(\w+)'>", out) or re.search(
        r"INFERENCE_PRECISION_HINT:\s+(\w+)", out)
    nireq = re.search(r"OPTIMAL_NUMBER_OF_INFER_REQUESTS:\s+(\d+)", out)
    if not fps:
        raise RuntimeError("benchmark_app printed no throughput:\n" + out[-2000:])
    return {"fps": float(fps.group(1)), "precision": precision.group(1) if precision else "?",
            "requests": int(nireq.group(1)) if nireq else None}


def validator_map(artifact: str, data: str, imgsz: int) -> float:
    from toolchain.pipelines.artifact_eval import ultralytics_box_metrics

    return float(ultralytics_box_metrics(Path(artifact), "openvino", data, imgsz).map)


def xml_of(artifact: str) -> Path:
    path = Path(artifact)
    return path if path.suffix == ".xml" else next(path.rglob("*.xml"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="The unpruned checkpoint.")
    parser.add_argument("--data", required=True)
    parser.add_argument("--recipe", action="append", default=[], metavar="NAME=CKPT",
                        help="An edgeprune recipe's checkpoint (pruned, fine-tuned); repeat for several.")
    parser.add_argument("--imgsz", type=int, default=None, help="Default: the baseline's training size.")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--out", type=Path, default=None, help="Also write the Markdown table here.")
    args = parser.parse_args()

    import ultralytics

    from targets.base import ExportConfig
    from toolchain.pipelines.deploy import deploy
    from targets.ultralytics_exports import build_ultralytics_exports
    from toolchain.core.latency import cpu_name
    from toolchain.models.sources import default_imgsz

    imgsz = args.imgsz or default_imgsz(args.baseline)[0]
    rows = [(ref.label, ref.artifact, True)
            for ref in build_ultralytics_exports(args.baseline, "openvino", imgsz, args.data, progress=print)]
    scratch = tempfile.TemporaryDirectory(prefix="vs-ultralytics-")  # removed at exit
    work = Path(scratch.name)
    for spec in args.recipe:
        name, ckpt = spec.split("=", 1)
        for precision in ("fp32", "int8"):
            res = deploy("openvino", ckpt, work / f"{len(rows)}", ExportConfig(precision=precision, imgsz=imgsz,
                                                                               data=args.data), evaluate=False)
            rows.append((f"edgeprune {name}, {precision.upper()} IR", res.artifact, False))
            print(f"built {rows[-1][0]}", flush=True)

    input_npy = referee_input(args.data, imgsz, work)
    speeds = {(label, hint): [] for label, _, _ in rows for hint in HINTS}
    executed = {}
    for r in range(args.rounds):
        for label, artifact, _ in rows:
            for hint in HINTS:
                got = benchmark_app(xml_of(artifact), hint, args.seconds, input_npy)
                speeds[(label, hint)].append(got["fps"])
                # benchmark_app reports the float precision hint; an INT8 IR runs its quantized ops in int8
                executed[label] = ("int8 + " if "INT8" in label else "") + got["precision"]
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    maps = {label: validator_map(artifact, args.data, imgsz) for label, artifact, _ in rows}
    median = {key: statistics.median(v) for key, v in speeds.items()}
    best = {hint: max((median[(label, hint)], label) for label, _, ref in rows if ref) for hint in HINTS}
    best_map = maps[best["latency"][1]]
    lines = [f"At {imgsz}: CPU {cpu_name()}, OpenVINO benchmark_app, batch 1, inference only, precision as the plugin "
             f"picks; {args.rounds} interleaved rounds of {args.seconds:g} s per hint (median); mAP50-95 by the "
             f"Ultralytics {ultralytics.__version__} validator on each artifact.", "",
             "| artifact | executed | latency hint FPS | × best export | throughput hint FPS | × best export "
             "| mAP50-95 | drop (pts) |", "|---|---|---|---|---|---|---|---|"]
    lines[0] += (" Input: the first validation image letterboxed to [0, 1] (benchmark_app -i), not benchmark_app's "
                 "[0, 255] noise.")
    for label, _, _ in rows:
        lat, thr = median[(label, "latency")], median[(label, "throughput")]
        lines.append(f"| {label} | {executed[label]} | {lat:.1f} | {lat / best['latency'][0]:.2f}× | {thr:.1f} | "
                     f"{thr / best['throughput'][0]:.2f}× | {maps[label]:.3f} | {(best_map - maps[label]) * 100:+.2f} |")
    lines += ["", f"Base: {best['latency'][1]} (latency), {best['throughput'][1]} (throughput); drop against the "
                  f"mAP50-95 of {best['latency'][1]}. Rounds: " + "; ".join(
                      f"{label} {hint} " + "/".join(f"{v:.1f}" for v in speeds[(label, hint)])
                      for label, _, _ in rows for hint in HINTS)]
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
