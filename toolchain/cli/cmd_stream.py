"""``edgeprune stream ARTIFACT SOURCE...``: a deployed detector on video, detections per stream and frame."""

from __future__ import annotations

import click

from toolchain.cli.opts import OutputPath, json_option
from toolchain.cli.render import console, print_json, progress, stdout_to_stderr, table


@click.command()
@click.argument("artifact", type=click.Path(exists=True))
@click.argument("sources", nargs=-1, required=True)
@click.option("--splice", type=click.IntRange(min=64), default=None, metavar="SIZE",
              help="Tile the sources into one SIZE x SIZE frame (4 sources of 416 in 832): one inference per round. "
                   "The artifact must run at SIZE (deploy --dynamic-shape, or built at SIZE).")
@click.option("--out", type=OutputPath("file"), default=None,
              help="Detections as JSON lines: one line per stream and frame (boxes in the stream's own pixels, class "
                   "names, scores, frame time).")
@click.option("--save-video", "video_dir", type=OutputPath("dir"), default=None,
              help="Folder for one annotated video per stream (MJPG .avi at the stream's size and frame rate).")
@click.option("--show", is_flag=True, help="A window per stream with its detections (needs a display).")
@click.option("--drop", type=click.Choice(["never", "oldest"]), default=None,
              help="When decoded frames or results pile up: wait (never; files lose no frame) or drop the oldest "
                   "(cameras and URLs, which do not wait). Default: oldest when a source is live, else never.")
@click.option("--requests", type=click.IntRange(min=1), default=None,
              help="Inferences in flight through the runtime's queue (default: two per request the runtime "
                   "computes at once, so one computes while the other's frame is post-processed and the next "
                   "prepared; 1 runs one at a time with the latency hint).")
@click.option("--capacity", type=click.IntRange(min=1), default=4, show_default=True,
              help="Decoded frames each source may hold.")
@click.option("--device", "-d", default="cpu", show_default=True, help="CPU, GPU (OpenVINO); cpu, cuda (ONNX Runtime).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Inference threads.")
@click.option("--conf", type=click.FloatRange(0, 1), default=None, help="Score threshold (default 0.25).")
@click.option("--iou", type=click.FloatRange(0, 1), default=None, help="NMS IoU threshold (default 0.45).")
@json_option
def stream(artifact, sources, splice, out, video_dir, show, drop, requests, capacity, device, threads, conf, iou,
           as_json) -> None:
    """Run a deployed ARTIFACT on SOURCE... to their end: video files, image folders, camera indices, RTSP/HTTP URLs.

    Each source is decoded on its own thread; inference goes through the runtime's request
    queue while the previous frame's boxes are decoded and NMS'd. The table gives frames read,
    detected and dropped per stream and the frames per second all streams together, decode and
    post-processing included. A source that ends or fails ends its stream, with a note; the
    others go on.
    """
    import edgeprune

    with stdout_to_stderr(as_json), progress(f"streaming {len(sources)} source(s)") as status:
        report = edgeprune.stream(artifact, list(sources), out=out, video_dir=video_dir, show=show, splice=splice,
                                  requests=requests, device=device, threads=threads, capacity=capacity, drop=drop,
                                  conf=conf, iou=iou, progress=status.update)
    if as_json:
        print_json(report)
        return
    for note in report.notes():
        console(stderr=True).print(f"[yellow]note:[/yellow] {note}")
    rows = [[i, s.source, s.frames_read, s.frames_detected, s.frames_dropped, s.detections,
             s.frames_detected / report.wall_s if report.wall_s else 0.0, s.ended or "stopped"]
            for i, s in enumerate(report.streams)]
    info = report.runner
    caption = [f"{report.fps:.1f} frames/s all streams together, decode + pre/post-processing included; "
               f"{info.get('backend')} {info.get('executed_precision')} on {info.get('device')}, "
               f"{report.requests} request(s) in flight, drop policy {report.drop}"
               + (f", spliced into {report.splice}x{report.splice}" if report.splice else "")]
    caption += [f"bounded by {report.bound()}"]
    caption += [f"detections: {report.detections_file}"] if report.detections_file else []
    caption += [f"annotated videos: {report.video_dir}"] if report.video_dir else []
    console().print(table("Stream", ["stream", "source", "read", "detected", "dropped", "boxes", "FPS", "ended"],
                          rows, caption="\n".join(caption)))
