"""What a run records, in one place: the keys of ``summary.json`` and the run config embedded in checkpoints.

``summary.json`` is written by :class:`lanmsff.training.recorder.RunRecorder` when a run ends (whatever
its outcome) and read by the comparison report (:mod:`lanmsff.analysis.report`); both use the names
defined here. This module imports nothing heavy (no torch), so that reading records stays cheap.

Schema versions: 1 = files written before ``schema_version`` existed (read as version 1); 2 adds
``schema_version``; 3 adds ``provenance`` (code revision, environment, command, machine, randomness;
:mod:`lanmsff.runtime.provenance`) and the data fingerprints in ``data``. Readers accept every version
up to :data:`SCHEMA_VERSION`. 4 adds ``selection``, ``data.identities_shared``,
``data.protocol_version`` (the data layer's file-list and fold rule), UAR and per-class recall
metrics and ``confusion_matrix_per_group``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, TypedDict

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
SCHEMA_VERSION = 4
CHECKPOINT_KEY = "lanmsff"  # checkpoint[CHECKPOINT_KEY] = {"version": package version, "config": run config}
STATUSES = ("running", "ok", "failed", "interrupted")


class RunSummary(TypedDict, total=False):
    """The contents of ``summary.json`` (every key is present in what ``RunRecorder`` writes)."""

    schema_version: int
    status: str  # one of STATUSES
    error: str  # failed / interrupted runs: what happened
    traceback: str  # failed runs: the end of the traceback
    job_type: str  # train, eval, predict, export
    study: str | None  # config.task_name
    variant: str | None  # config.variant, else model.name
    fold: int | None
    seed: int | None
    version: str  # the lanmsff package version
    started: str  # ISO time, UTC
    output_dir: str
    restarts: int  # earlier attempts in this run folder (a requeued or restarted job resumes there)
    slurm: dict[str, Any] | None  # the SLURM job (id, restart count, tasks, node, partition); None outside
    config: dict[str, Any]  # the resolved config, secrets redacted
    params: int | None
    flops: int | None  # forward FLOPs per image
    model_size_mb: float | None
    # test/acc, test/f1_macro, test/uar, test/acc_<POSE>, test/uar_<POSE>, test/recall_<class>, val/acc_best, ...
    metrics: dict[str, float]
    best_ckpt: str | None
    duration_s: float | None
    # split sizes, classes, groups, protocol, protocol_version, identities_shared, fingerprint, test_hash, ...
    data: dict[str, Any]
    # what chose the epoch, LR schedule and tested weights: "validation", or "test-fold" (data.protocol=paper)
    selection: str
    hparams_tuned_on_fold: int  # tuned_on_fold=N: hyper-parameters tuned on fold N's validation people
    provenance: dict[str, Any]  # code revision, package versions, command line, machine, seed and determinism
    resumed_from: str | None
    world_size: int
    confusion_matrix: list[list[int]]
    confusion_matrix_per_group: dict[str, list[list[int]]]  # per pose (KDEF angle)
    test_checkpoint: dict[str, Any]  # which weights were tested: {"choice": best | last, "path": ...}
    temperature: float  # calibrate=temperature: the temperature fitted on the validation split
    cross_test: dict[str, Any]  # per other dataset: shared classes, unmapped classes, images left out
    class_mapping: dict[str, Any]  # eval.py on another vocabulary: shared and unmapped classes
    predictions: dict[str, Any]  # predict.py: counts and output files
    export: dict[str, Any]  # export.py: the file and its check


SUMMARY_KEYS = tuple(RunSummary.__annotations__)


def new_summary(**values: Any) -> RunSummary:
    """A summary with the keys every run writes, ``status: running``, and ``values`` filled in."""
    unknown = sorted(set(values) - set(SUMMARY_KEYS))
    if unknown:
        raise KeyError(f"not summary.json keys: {', '.join(unknown)}")
    base: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "status": "running",
        "metrics": {},
        **dict.fromkeys(("params", "flops", "model_size_mb", "best_ckpt", "duration_s")),
    }
    return RunSummary(**{**base, **values})  # type: ignore[typeddict-item]


def read_summary(path: str | Path) -> dict[str, Any] | None:
    """The contents of one ``summary.json``, or ``None`` (with a warning) when it cannot be used.

    Files of a newer schema than this package knows are refused with a warning naming the versions.
    """
    try:
        summary = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        log.warning("skipping %s: not a readable %s (%s)", path, SUMMARY_FILE, err)
        return None
    if not isinstance(summary, dict):
        log.warning("skipping %s: not a JSON object", path)
        return None
    version = summary.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        log.warning(
            "skipping %s: schema_version %r is newer than this lanmsff reads (%d); upgrade lanmsff",
            path,
            version,
            SCHEMA_VERSION,
        )
        return None
    return summary


def embed_config(
    checkpoint: dict[str, Any], config: dict[str, Any], version: str, provenance: dict[str, Any] | None = None
) -> None:
    """Store the run's resolved config (plain containers) and its provenance in a checkpoint dictionary."""
    checkpoint[CHECKPOINT_KEY] = {"version": version, "config": config, "provenance": provenance}


def embedded_config(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The run config stored by :func:`embed_config`, or ``None``."""
    embedded = checkpoint.get(CHECKPOINT_KEY)
    config = embedded.get("config") if isinstance(embedded, dict) else None
    return config if isinstance(config, dict) else None
