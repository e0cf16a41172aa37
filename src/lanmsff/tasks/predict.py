"""The predict task behind ``predict.py``: the faces in photos, videos and webcams (see :mod:`lanmsff.prediction`).

Standard output holds one summary line per video and the final line counting every input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lanmsff.api import Predictor
from lanmsff.errors import UserError
from lanmsff.prediction import RunOptions, VideoOptions, find_inputs, predict_inputs, webcam_index
from lanmsff.training.recorder import RunRecorder
from lanmsff.utils.progress import set_quiet


def _options(cfg: DictConfig) -> RunOptions:
    """Outputs and video settings of the command line (checked by :class:`VideoOptions`)."""
    max_frames = cfg.get("max_frames")
    video = VideoOptions(
        stride=int(cfg.get("stride", 1)),
        smooth=float(cfg.get("smooth", 0.6)),
        detect_every=int(cfg.get("detect_every", 1)),
        overlap=bool(cfg.get("overlap", True)),
        max_frames=None if max_frames is None else int(max_frames),
    )
    return RunOptions(save_annotated=bool(cfg.save_annotated), video=video, explain=bool(cfg.get("explain", False)))


def predict(cfg: DictConfig) -> dict[str, Any]:
    """The task behind ``predict.py``: exit status 2 when no input yielded a classified face."""
    if cfg.get("quiet"):
        set_quiet()
    with RunRecorder(cfg.paths.output_dir, cfg, job_type="predict") as run:
        if not cfg.get("ckpt_path") or cfg.get("input") in (None, ""):
            raise UserError(
                "predict.py needs ckpt_path=<checkpoint> and input=<image or video file | folder | glob | webcam index>"
            )
        options = _options(cfg)
        align, views = cfg.get("align"), cfg.get("views")
        predictor = Predictor.from_checkpoint(
            cfg.ckpt_path,
            precision=cfg.precision,
            backend=cfg.get("backend", "eager"),
            expect_classes=cfg.get("expect_classes"),
            device=cfg.get("device", "auto"),
            batch_size=cfg.get("batch_size"),
            detector=cfg.get("detector"),
            align=None if align is None else bool(align),
            margin=cfg.get("margin"),
            calibrate=bool(cfg.get("calibrate", True)),
            tta=cfg.get("tta", "none"),
            detect_side=cfg.detect_side,
            min_face=cfg.get("min_face"),
            views=None if views is None else list(views) if not isinstance(views, str) else [views],
        )
        camera = webcam_index(cfg.input)
        files = [] if camera is not None else find_inputs(cfg.input)
        webcams = [] if camera is None else [camera]
        out_dir = Path(cfg.get("output") or cfg.paths.output_dir)
        counts = predict_inputs(predictor, files, out_dir, webcams=webcams, options=options)
        run.summary["predictions"] = counts
        print(
            f"{counts['files']} files: {counts['files_with_faces']} with faces ({counts['faces']} faces), "
            f"{counts['files_without_face']} without a face, {counts['unreadable']} unusable; "
            f"results in {counts['csv']} and {counts['jsonl']}"
        )
        if not counts["files_with_faces"]:
            raise UserError(
                f"no face was classified in any of the {counts['files']} inputs; reasons in {counts['csv']}"
            )
    return run.summary
