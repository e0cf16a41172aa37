"""The predict task behind ``predict.py``: classify the faces in people's own photos (see :mod:`lanmsff.prediction`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lanmsff.errors import UserError
from lanmsff.prediction import Predictor, find_inputs, predict_files
from lanmsff.training.run import RunRecorder
from lanmsff.utils.progress import set_quiet


def predict(cfg: DictConfig) -> dict[str, Any]:
    """The task behind ``predict.py``: exit status 2 when no file yielded a classified face."""
    if cfg.get("quiet"):
        set_quiet()
    with RunRecorder(cfg.paths.output_dir, cfg, job_type="predict") as run:
        if not cfg.get("ckpt_path") or not cfg.get("input"):
            raise UserError("predict.py needs ckpt_path=<checkpoint> and input=<image file | folder | glob>")
        predictor = Predictor(
            cfg.ckpt_path,
            precision=cfg.precision,
            backend=cfg.get("backend", "eager"),
            detect_side=cfg.detect_side,
            min_face=cfg.min_face,
            expect_classes=cfg.get("expect_classes"),
        )
        files = find_inputs(cfg.input)
        out_dir = Path(cfg.get("output") or cfg.paths.output_dir)
        counts = predict_files(predictor, files, out_dir, save_annotated=bool(cfg.save_annotated))
        run.summary["predictions"] = counts
        print(
            f"{counts['files']} files: {counts['files_with_faces']} with faces ({counts['faces']} faces), "
            f"{counts['files_without_face']} without a face, {counts['unreadable']} unusable; "
            f"results in {counts['csv']} and {counts['jsonl']}"
        )
        if not counts["files_with_faces"]:
            raise UserError(f"no face was classified in any of the {counts['files']} files; reasons in {counts['csv']}")
    return run.summary
