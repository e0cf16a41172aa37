"""One run's record: ``summary.json``, result plots, predictions, and a printed result table.

``summary.json`` is what sweeps and the comparison report read. It is written atomically when the
run ends, whether it succeeded (``status: ok``) or failed (``status: failed`` with the error).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pytorch_lightning.utilities import rank_zero_only
from rich.console import Console
from rich.table import Table

from lanmsff import __version__
from lanmsff.models.introspection import count_flops, count_params, model_size_mb
from lanmsff.plots import (
    confusion_matrices_figure,
    confusion_matrix_figure,
    group_accuracy_figure,
    reliability_figure,
    save_figure,
)
from lanmsff.records import SUMMARY_FILE, RunSummary, new_summary
from lanmsff.runtime.slurm import slurm_job
from lanmsff.training.calibration import calibration_metrics, reliability_bins
from lanmsff.training.metrics import confusion_per_group
from lanmsff.utils.config import to_plain
from lanmsff.utils.io import atomic_write, atomic_write_json
from lanmsff.utils.wandb_records import record_to_wandb
from lanmsff.utils.wandb_runs import finish_wandb

log = logging.getLogger(__name__)


def _number(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        value = value.detach().float().cpu().item()
    value = float(value)
    return None if math.isnan(value) else value


def scalar_metrics(metrics: dict[str, Any], prefixes: Sequence[str] = ("val/", "test/", "train/")) -> dict[str, float]:
    """Plain floats of Lightning's logged metrics (NaNs dropped), sorted by name."""
    out = {}
    for key in sorted(metrics):
        if key.startswith(tuple(prefixes)):
            number = _number(metrics[key])
            if number is not None:
                out[key] = number
    return out


def previous_attempts(output_dir: str | Path) -> int:
    """How many earlier attempts ran in this run folder: 0 for a first start, else 1 + the count the
    previous attempt recorded in its ``summary.json`` (a restarted or requeued job)."""
    try:
        previous = json.loads((Path(output_dir) / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return 0
    return int(previous.get("restarts") or 0) + 1 if isinstance(previous, dict) else 0


class RunRecorder:
    """Context manager that writes ``summary.json`` on exit and closes the loggers, also on failure."""

    def __init__(self, output_dir: str | Path, cfg: Any, *, job_type: str) -> None:
        self.output_dir = Path(output_dir)
        self.loggers: list[Any] = []
        self._start = time.perf_counter()
        plain = to_plain(cfg)
        self.summary: RunSummary = new_summary(
            job_type=job_type,
            study=plain.get("task_name"),
            variant=plain.get("variant") or (plain.get("model") or {}).get("name"),
            fold=(plain.get("data") or {}).get("fold"),
            seed=plain.get("seed"),
            version=__version__,
            started=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            output_dir=str(self.output_dir),
            restarts=previous_attempts(self.output_dir),
            slurm=slurm_job(),
            config=plain,
        )

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            self.summary["status"] = "ok"
            self.summary.pop("error", None)
        elif isinstance(exc, KeyboardInterrupt | SystemExit):
            self.summary["status"] = "interrupted"
            self.summary["error"] = f"{exc_type.__name__}: stopped before the end; resume=auto in this folder continues"
        else:
            self.summary["status"] = "failed"
            self.summary["error"] = f"{exc_type.__name__}: {exc}"
            self.summary["traceback"] = "".join(traceback.format_exception(exc_type, exc, tb))[-8000:]
        self.summary["duration_s"] = round(time.perf_counter() - self._start, 3)
        self.write()
        self.log_record_to_wandb()
        close_loggers(self.loggers, failed=exc is not None)
        return False

    def write(self) -> Path | None:
        """Write ``summary.json`` atomically, once per run: only the process of global rank 0 writes."""
        if rank_zero_only.rank != 0:
            return None
        return atomic_write_json(self.output_dir / SUMMARY_FILE, self.summary)

    def record_model(self, net: torch.nn.Module, input_shape: tuple[int, ...]) -> None:
        """Trainable parameters, FLOPs per image (torch's flop counter) and size in MiB."""
        self.summary["params"] = count_params(net)
        self.summary["flops"] = count_flops(net, input_shape)
        self.summary["model_size_mb"] = round(model_size_mb(net), 4)

    def record_metrics(self, metrics: dict[str, Any]) -> None:
        self.summary["metrics"].update(scalar_metrics(metrics))

    def record_test(
        self,
        outputs: dict[str, torch.Tensor],
        class_names: Sequence[str],
        group_names: Sequence[str],
        files: Sequence[str],
    ) -> None:
        """Plots, calibration and per-file predictions of the test set, in the run folder and the loggers."""
        if not outputs:
            return
        confusion = outputs["confusion"].numpy()
        self.summary["confusion_matrix"] = confusion.astype(int).tolist()
        save_figure(confusion_matrix_figure(confusion, class_names), self.output_dir / "confusion_matrix.png")
        predicted = outputs["probs"].argmax(dim=1)
        per_pose = confusion_per_group(predicted, outputs["targets"], outputs["groups"], len(class_names), group_names)
        if per_pose:
            self.summary["confusion_matrix_per_group"] = per_pose
            figure = confusion_matrices_figure(per_pose, class_names, title="Test confusion matrix per pose")
            save_figure(figure, self.output_dir / "confusion_matrix_per_pose.png")
        per_group = {
            g: self.summary["metrics"][f"test/acc_{g}"]
            for g in group_names
            if f"test/acc_{g}" in self.summary["metrics"]
        }
        if per_group:
            overall = self.summary["metrics"].get("test/acc")
            save_figure(group_accuracy_figure(per_group, overall=overall), self.output_dir / "accuracy_per_pose.png")
        self.record_calibration(outputs["probs"], outputs["targets"], outputs["groups"], group_names)
        predictions = self._write_predictions(outputs, class_names, group_names, files)
        self._log_test_to_wandb(per_group, predictions, class_names)

    def record_calibration(
        self,
        probs: torch.Tensor,
        targets: torch.Tensor,
        groups: torch.Tensor,
        group_names: Sequence[str],
        *,
        prefix: str = "test/",
        figure: str = "reliability.png",
    ) -> dict[str, float]:
        """ECE, NLL and Brier score (overall and per group) into the metrics and loggers; a reliability diagram."""
        metrics = calibration_metrics(probs, targets, groups, group_names, prefix=prefix)
        self.summary["metrics"].update(metrics)
        for logger in self.loggers:
            logger.log_metrics(metrics)
        ece = metrics.get(f"{prefix}ece")
        bins = reliability_bins(probs, targets)
        save_figure(
            reliability_figure(bins, ece=ece, title=f"Reliability ({prefix.rstrip('/')})"), self.output_dir / figure
        )
        return metrics

    def _write_predictions(
        self,
        outputs: dict[str, torch.Tensor],
        class_names: Sequence[str],
        group_names: Sequence[str],
        files: Sequence[str],
    ) -> pd.DataFrame:
        """``predictions.csv``: per test image its file, group, label, prediction and class probabilities."""
        probs = outputs["probs"].numpy()
        table = pd.DataFrame(
            {
                "file": list(files) if len(files) == len(probs) else [""] * len(probs),
                "group": [group_names[g] if group_names else "" for g in outputs["groups"].tolist()],
                "label": [class_names[t] for t in outputs["targets"].tolist()],
                "predicted": [class_names[p] for p in probs.argmax(axis=1)],
                **{f"p_{name}": np.round(probs[:, i], 6) for i, name in enumerate(class_names)},
            }
        )
        atomic_write(self.output_dir / "predictions.csv", lambda f: table.to_csv(f, index=False), binary=False)
        return table

    def log_record_to_wandb(self) -> None:
        """The run's record into its W&B run's config and summary (:func:`record_to_wandb`), which
        ``compare --wandb`` turns back into the same record; rank 0 only, and only a started W&B run."""
        if rank_zero_only.rank != 0:
            return
        for logger in self.loggers:
            if type(logger).__name__ != "WandbLogger" or getattr(logger, "_experiment", None) is None:
                continue
            try:
                sent = record_to_wandb(self.summary)
                logger.experiment.config.update(sent.config, allow_val_change=True)
                logger.experiment.summary.update(sent.summary)
            except Exception as err:  # e.g. W&B's service stopped by the job's SIGTERM; summary.json is written
                log.warning("W&B: run record not logged (%s: %s)", type(err).__name__, err)

    def _log_test_to_wandb(
        self, per_group: dict[str, float], predictions: pd.DataFrame, class_names: Sequence[str]
    ) -> None:
        """The confusion matrix as an image and as a table of counts (true, predicted, count), per-pose
        accuracy and the test predictions (``predictions.csv``) as tables, cost in the run summary."""
        for logger in self.loggers:
            if type(logger).__name__ != "WandbLogger":
                continue
            logger.log_image(key="test/confusion_matrix", images=[str(self.output_dir / "confusion_matrix.png")])
            counts = self.summary["confusion_matrix"]
            cells = [[class_names[i], class_names[j], n] for i, row in enumerate(counts) for j, n in enumerate(row)]
            logger.log_table(key="test/confusion_counts", columns=["true", "predicted", "count"], data=cells)
            logger.log_table(key="test/predictions", dataframe=predictions)
            if per_group:
                rows = [[group, value] for group, value in per_group.items()]
                logger.log_table(key="test/accuracy_per_pose", columns=["pose", "accuracy"], data=rows)
            logger.experiment.summary.update({k: self.summary[k] for k in ("params", "flops", "model_size_mb")})


def close_loggers(loggers: Sequence[Any], *, failed: bool = False) -> None:
    """Finalize every logger; end the W&B run so the next Hydra job starts its own."""
    for logger in loggers:
        try:
            logger.finalize("failed" if failed else "success")
        except Exception as err:  # a logger failing to close must not hide the run's own result
            log.warning("Closing logger %s failed: %s", type(logger).__name__, err)
    finish_wandb(exit_code=1 if failed else 0)


def print_results(summary: dict[str, Any], group_names: Sequence[str], console: Console | None = None) -> None:
    """A table of the test metrics, overall and per pose, and what the protocol lets them claim."""
    metrics = summary.get("metrics", {})
    table = Table(title="Test results")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("accuracy", "test/acc"),
        ("UAR (mean class recall)", "test/uar"),
        ("macro F1", "test/f1_macro"),
        ("best val accuracy", "val/acc_best"),
    ]
    rows += [(f"accuracy {g}", f"test/acc_{g}") for g in group_names]
    for label, key in rows:
        if key in metrics:
            table.add_row(label, f"{100 * metrics[key]:.2f}%")
    console = console or Console()
    console.print(table)
    if line := protocol_line(summary.get("data") or {}):
        console.print(line)
    console.print(f"Run folder: {summary.get('output_dir', '')} (summary.json, plots, checkpoints)")


def print_next_steps(
    lines: Sequence[str],
    summary: dict[str, Any],
    console: Console | None = None,
    *,
    commands: Mapping[str, str] | None = None,
) -> None:
    """Print what to do next, one command a line; ``{run_dir}`` and ``{best_ckpt}`` are filled in from the
    run's summary (a config's ``next_steps``, e.g. the demo's). ``commands`` replaces the commands the lines
    are written with (a checkout's, ``.venv/bin/python predict.py``) by the user's (``lanmsff-predict``)."""
    if not lines:
        return
    console = console or Console()
    fields = {"run_dir": summary.get("output_dir", ""), "best_ckpt": summary.get("best_ckpt") or "<checkpoint>"}
    console.print("Next:")
    for line in lines:
        for written, used in (commands or {}).items():
            line = line.replace(written, used)
        console.print(f"  {line.format(**fields)}", highlight=False, soft_wrap=True)


def protocol_line(data: dict[str, Any]) -> str | None:
    """One sentence on what the split lets the test numbers claim (``None`` for data without protocols)."""
    protocol = data.get("protocol")
    people = (data.get("subjects") or {}).get("test")
    if protocol in ("subject", "cross_pose"):
        unseen = f"the {people} test people" if people else "the test people"
        return f"Protocol {protocol}: person-independent, {unseen} were never seen in training or validation."
    if protocol == "stratified":
        return (
            "Protocol stratified: the same people are in train and test (identities shared), so this measures "
            "known faces; data.protocol=subject gives the person-independent number."
        )
    if protocol == "paper":
        return (
            "Protocol paper: validation is the test fold (selection: test-fold), as in the authors' code; "
            "these numbers are optimistic."
        )
    return None
