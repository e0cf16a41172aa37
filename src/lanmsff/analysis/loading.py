"""The runs of studies as one data frame: from every ``summary.json`` under some folders, or from W&B.

    runs = load_runs(["logs/kdef_ablation/multiruns"])  # one row per run, failed ones included

Accuracies are fractions in [0, 1]. Besides the identity of a run (study, variant, fold, seed) and its
metrics, a row holds what the statistics need: the number of distinct training and test images
(``n_train``, ``n_test``), the dataset it trained on, and its run folder (``run_dir``: learning curves
in ``csv/metrics.csv``, per-image predictions in ``predictions.csv``).

It also holds the labels that travel with the numbers (:func:`protocol_columns`), read from
``summary.json`` with the old defaults where a field is missing:

* ``protocol``: ``data.protocol`` (else ``config.data.protocol``);
* ``protocol_version``: ``data.protocol_version`` (missing: 1; version 2 changed the file list and the
  fold assignment, so runs of different versions are never pooled or paired);
* ``identities_shared``: ``data.identities_shared`` (missing: true for the image-level protocols
  ``stratified`` and ``paper``, false otherwise, also when no protocol is recorded);
* ``selection``: the top-level ``selection`` (missing: ``test-fold`` when the protocol is ``paper``,
  whose validation set is its test fold, else ``validation``);
* ``hparams_tuned_on_fold``: the top-level ``hparams_tuned_on_fold``, else ``tuned_on.fold``, else
  ``config.tuned_on_fold``;
  ``hparams_search``: ``config.hparams_search`` when not null;
* ``reference``: the study's reference variant where a run records one (top-level ``reference``, else
  ``config.reference``).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lanmsff.data.kdef_names import ANGLES
from lanmsff.errors import UserError
from lanmsff.records import SUMMARY_FILE, read_summary
from lanmsff.utils.wandb_records import has_record, record_from_wandb, unwrap_config
from lanmsff.utils.wandb_runs import GROUP_SEPARATOR, group_matches

log = logging.getLogger(__name__)

METRIC_PREFIXES = ("test/", "val/", "train/", "test_best/", "test_last/", "test_temperature/", "cross/")
RUN_COLUMNS = [
    "study",
    "variant",
    "fold",
    "seed",
    "status",
    "error",
    "job_type",
    "params",
    "flops",
    "model_size_mb",
    "duration_s",
    "started",
    "dataset",
    "n_train",
    "n_test",
    "code_revision",
    "dirty",
    "data_fingerprint",
    "test_hash",
    "environment",
    "protocol",
    "protocol_version",
    "identities_shared",
    "selection",
    "hparams_tuned_on_fold",
    "hparams_search",
    "reference",
    "run_dir",
    "source",
]
OBJECT_COLUMNS = ["classes", "confusion_matrix", "confusion_matrix_per_group"]  # in the data frame, not in runs.csv
COST_COLUMNS = ["params", "flops", "model_size_mb"]
JOB_TYPES = ("train", "eval", "all")
IMAGE_LEVEL_PROTOCOLS = ("stratified", "paper")  # folds of images: the same people in training and test
TEST_FOLD, VALIDATION = "test-fold", "validation"  # what chose the epochs and the checkpoint of a run


# ---------------------------------------------------------------------------------------------- records
def _first(*values: Any, default: Any = None) -> Any:
    return next((v for v in values if v is not None and v != ""), default)


def _get(config: Mapping[str, Any], dotted: str) -> Any:
    """``config["a"]["b"]`` for ``"a.b"``; also flat keys ``"a.b"`` / ``"a/b"`` (as some loggers store them)."""
    for key in (dotted, dotted.replace(".", "/")):
        if key in config:
            return config[key]
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def code_revision_label(code: Mapping[str, Any]) -> str | None:
    """``<commit[:12]>``, ``<commit[:12]>+dirty.<diff hash[:8]>`` or ``no git``; ``None`` when not recorded."""
    if not code:
        return None
    if not code.get("git"):
        return "no git"
    label = str(code.get("commit") or "?")[:12]
    return f"{label}+dirty.{str(code.get('diff_sha256') or '')[:8]}" if code.get("dirty") else label


def environment_label(environment: Mapping[str, Any]) -> str | None:
    """``torch 2.14.1, pytorch-lightning 2.6.6, lanmsff 0.1.0`` (``None`` when not recorded)."""
    names = ("torch", "pytorch-lightning", "lanmsff")
    parts = [f"{n} {environment[n]}" for n in names if environment.get(n)]
    return ", ".join(parts) or None


def _provenance_columns(summary: Mapping[str, Any]) -> dict[str, Any]:
    provenance = summary.get("provenance") or {}
    code = (provenance.get("code") or {}).get("package") or {}
    data = summary.get("data") or {}
    return {
        "code_revision": code_revision_label(code),
        "dirty": code.get("dirty") if code else None,
        "data_fingerprint": data.get("fingerprint"),
        "test_hash": data.get("test_hash"),
        "environment": environment_label(provenance.get("environment") or {}),
    }


def _tuned_fold(summary: Mapping[str, Any]) -> Any:
    tuned_on = summary.get("tuned_on")
    return _first(
        summary.get("hparams_tuned_on_fold"),
        tuned_on.get("fold") if isinstance(tuned_on, Mapping) else None,
        (summary.get("config") or {}).get("tuned_on_fold"),
    )


def _old_protocol_version(summary: Mapping[str, Any], protocol: Any) -> int | None:
    """The data protocol version of a run that records none: 1 for a KDEF-protocol run written before the
    field existed (summary schema below 4); none for other data sets and for newer runs that failed
    before their data was read (they were never split, so they pool with any version)."""
    old = int(summary.get("schema_version") or 1) < 4
    return 1 if protocol is not None and old else None


def protocol_columns(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The protocol labels of a run (see the module docstring for the fields and their defaults)."""
    config = summary.get("config") or {}
    data = summary.get("data") or {}
    protocol = _first(data.get("protocol"), _get(config, "data.protocol"))
    shared = data.get("identities_shared")
    selection = summary.get("selection")
    search = config.get("hparams_search")
    return {
        "protocol": None if protocol is None else str(protocol),
        "protocol_version": _first(data.get("protocol_version"), default=_old_protocol_version(summary, protocol)),
        "identities_shared": bool(shared) if isinstance(shared, bool) else protocol in IMAGE_LEVEL_PROTOCOLS,
        "selection": str(selection) if selection else (TEST_FOLD if protocol == "paper" else VALIDATION),
        "hparams_tuned_on_fold": _tuned_fold(summary),
        "hparams_search": None if search in (None, "", "null") else str(search),
        "reference": _first(summary.get("reference"), config.get("reference")),
    }


def record_from_summary(summary: Mapping[str, Any], source: str = "") -> dict[str, Any]:
    """One flat record (a row of :func:`load_runs`) from the contents of a ``summary.json``.

    ``study``, ``variant``, ``fold`` and ``seed`` fall back to ``config.task_name``, ``config.variant``
    or ``config.model.name``, ``config.data.fold`` and ``config.seed`` for files that lack them.
    Metrics become columns under their own names (``test/acc``, ``test/acc_FL``, ...).
    """
    config = summary.get("config") or {}
    data = summary.get("data") or {}
    status = str(summary.get("status") or "unknown")
    metrics = {k: float(v) for k, v in (summary.get("metrics") or {}).items() if is_number(v)}
    return {
        "study": str(_first(summary.get("study"), config.get("task_name"), default="unknown")),
        "variant": str(
            _first(summary.get("variant"), config.get("variant"), _get(config, "model.name"), default="unknown")
        ),
        "fold": _first(summary.get("fold"), _get(config, "data.fold")),
        "seed": _first(summary.get("seed"), config.get("seed")),
        "status": status,
        "error": None if status == "ok" else str(summary.get("error") or f"status: {status}"),
        "job_type": str(_first(summary.get("job_type"), config.get("job_type"), default="train")),
        **{key: summary.get(key) for key in (*COST_COLUMNS, "duration_s", "started")},
        "dataset": data.get("dataset"),
        "n_train": _first(data.get("train_images"), data.get("train")),
        "n_test": data.get("test"),
        **_provenance_columns(summary),
        **protocol_columns(summary),
        "run_dir": str(Path(source).parent) if source and not source.startswith("wandb:") else None,
        "source": source,
        "classes": data.get("classes"),
        "confusion_matrix": summary.get("confusion_matrix"),
        "confusion_matrix_per_group": summary.get("confusion_matrix_per_group"),
        **metrics,
    }


def metric_order(column: str) -> tuple[int, int, str]:
    """Order of metric columns: accuracy, UAR, macro F1, per angle (FL HL S HR FR), the rest by name."""
    fixed = {"test/acc": 0, "test/uar": 0, "test/f1_macro": 1}
    if column in fixed:
        return (fixed[column], 0, column)
    group = column.removeprefix("test/acc_")
    if column.startswith("test/acc_"):
        return (2, ANGLES.index(group) if group in ANGLES else len(ANGLES), group)
    return (3, 0, column)


def runs_frame(records: Iterable[Mapping[str, Any]], *, job_type: str | None = "train") -> pd.DataFrame:
    """A data frame of run records, keeping ``job_type`` only (``None`` or ``"all"``: every job)."""
    runs = pd.DataFrame.from_records(list(records))
    for column in (*RUN_COLUMNS, *OBJECT_COLUMNS):
        if column not in runs:
            runs[column] = pd.Series([None] * len(runs), dtype=object)
    if job_type not in (None, "all"):
        runs = runs[runs["job_type"] == job_type].copy()
    for column in ("fold", "seed", "params", "flops", "n_train", "n_test", "protocol_version", "hparams_tuned_on_fold"):
        runs[column] = pd.to_numeric(runs[column], errors="coerce").round().astype("Int64")
    runs["identities_shared"] = runs["identities_shared"].map(lambda v: isinstance(v, (bool, np.bool_)) and bool(v))
    runs["selection"] = runs["selection"].fillna(VALIDATION)
    metrics = sorted((c for c in runs if c.startswith(METRIC_PREFIXES)), key=metric_order)
    runs = runs[[*RUN_COLUMNS, *metrics, *OBJECT_COLUMNS]]
    return runs.sort_values(["study", "variant", "fold", "seed", "source"], na_position="last").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- loading
def find_summaries(paths: Sequence[str | Path]) -> list[Path]:
    """Every ``summary.json`` under the given folders (or the given files), sorted.

    Raises :class:`UserError` when a path does not exist or nothing is found.
    """
    if not paths:
        raise UserError("no folder given: pass run or multirun folders (logs/<study>/runs/..., .../multiruns/...)")
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        raise UserError(f"no such file or folder: {', '.join(missing)}")
    files = {f.resolve() for p in map(Path, paths) for f in ([p] if p.is_file() else p.rglob(SUMMARY_FILE))}
    if not files:
        raise UserError(
            f"no {SUMMARY_FILE} found under {', '.join(map(str, paths))}; pass the run or multirun folders "
            "that train.py wrote (logs/<study>/runs/<time> or logs/<study>/multiruns/<time>)"
        )
    return sorted(files)


def load_runs(paths: Sequence[str | Path], *, job_type: str | None = "train") -> pd.DataFrame:
    """One row per run found under ``paths`` (failed runs included), ``job_type`` runs only.

    Columns: ``study, variant, fold, seed, status, error, job_type, params, flops, model_size_mb,
    duration_s, started, source`` (the summary.json), every metric (``test/acc``, ...), then
    ``classes`` and ``confusion_matrix`` (lists). Raises :class:`UserError` when nothing is found.
    """
    files = find_summaries(paths)
    records = [record_from_summary(s, str(f)) for f in files if (s := read_summary(f)) is not None]
    runs = runs_frame(records, job_type=job_type)
    if runs.empty:
        raise UserError(
            f"found {len(files)} {SUMMARY_FILE} file(s) under {', '.join(map(str, paths))}, "
            f"but no readable one of job type {job_type!r} (compare eval jobs with --job-type eval or all)"
        )
    return runs


# ---------------------------------------------------------------------------------------------- W&B
def _summary_dict(summary: Any) -> dict[str, Any]:
    raw = getattr(summary, "_json_dict", None)
    return dict(raw if isinstance(raw, Mapping) else (summary or {}))


def wandb_record(run: Any) -> dict[str, Any]:
    """A run record (as :func:`record_from_summary` makes) from a W&B public-API run.

    A run that logged its record (:func:`lanmsff.utils.wandb_records.record_to_wandb`, every run
    since) gives back that record, so it compares exactly as its run folder does; ``run.state`` other
    than ``finished`` or ``running`` (``crashed``, ``failed``, ``killed``) overrides an ``ok`` status.
    Older runs are read from ``run.config`` (the Hydra config plus flat labels and cost),
    ``run.summary`` (last logged metrics) and ``run.state``, without sizes, hashes or confusion matrix.
    """
    raw_config = dict(getattr(run, "config", None) or {})
    summary = _summary_dict(getattr(run, "summary", None))
    state = str(getattr(run, "state", "") or "unknown").lower()
    source = "wandb:" + "/".join(map(str, getattr(run, "path", None) or [run.name]))  # entity/project/id
    if has_record(raw_config):
        record = record_from_wandb(raw_config, summary)
        if state not in ("finished", "running") and record.get("status") == "ok":
            record.update(status=state, error=f"W&B run state: {state}")
        return record_from_summary(record, source)
    config = unwrap_config(raw_config)
    run_job_type = getattr(run, "job_type", None)
    job_type = _first(config.get("job_type"), run_job_type if run_job_type in ("train", "eval") else None)
    record = {
        "status": "ok" if state == "finished" else state,
        "error": None if state == "finished" else f"W&B run state: {state}",
        "study": _first(config.get("task_name"), getattr(run, "group", None)),
        "job_type": job_type or ("train" if "optim" in config else "eval"),
        "config": config,
        "metrics": {k: v for k, v in summary.items() if k.startswith(METRIC_PREFIXES)},
        "duration_s": summary.get("_runtime"),
        "started": getattr(run, "created_at", None),
        **{key: _first(summary.get(key), config.get(key)) for key in COST_COLUMNS},
        # the protocol labels train.py logs flat beside the config (lanmsff.tasks.common.log_hyperparams)
        "data": {key: config.get(key) for key in ("protocol_version", "identities_shared") if key in config},
        "selection": config.get("selection"),
    }
    return record_from_summary(record, source)


def _group_filter(group: str | None) -> dict[str, Any]:
    """The W&B API filter of the groups ``group`` selects (checked again on each run by group_matches)."""
    if not group:
        return {}
    if GROUP_SEPARATOR in group:
        return {"group": group}
    return {"$or": [{"group": group}, {"group": {"$regex": f"^{re.escape(group + GROUP_SEPARATOR)}"}}]}


def _in_group(run: Any, group: str | None) -> bool:
    """Whether a run the API returned belongs to the groups ``group`` selects (a run without a group
    attribute is trusted to the API's filter)."""
    run_group = getattr(run, "group", None)
    return not group or run_group is None or group_matches(run_group, group)


def _wandb_api() -> Any:
    """``wandb.Api()``, or :class:`UserError` when W&B is offline or has no API key."""
    from lanmsff.utils.config import wandb_has_credentials

    mode = os.environ.get("WANDB_MODE", "")
    if mode in ("offline", "disabled", "dryrun"):
        raise UserError(f"--wandb needs W&B online, but WANDB_MODE={mode}; unset it (and have network access)")
    if not wandb_has_credentials():
        raise UserError("--wandb needs a W&B API key: set WANDB_API_KEY or run `wandb login`")
    import wandb

    return wandb.Api(timeout=30)


def load_wandb_runs(
    path: str, group: str | None = None, *, job_type: str | None = "train", api: Any = None
) -> pd.DataFrame:
    """Runs of the W&B project ``path`` (``ENTITY/PROJECT``), of the groups ``group`` selects if given:
    ``<study>/<sweep id>`` one sweep, a bare ``<study>`` every sweep of that study
    (:func:`lanmsff.utils.wandb_runs.group_matches`).

    ``api`` defaults to ``wandb.Api()``; raises :class:`UserError` when offline, without an API key,
    when W&B cannot be reached, or when no run matches.
    """
    if path.count("/") != 1 or not all(path.split("/")):
        raise UserError(f"--wandb {path!r}: expected ENTITY/PROJECT, e.g. my-team/lanmsff")
    api = api or _wandb_api()
    try:
        found = api.runs(path, filters=_group_filter(group))
        records = [wandb_record(run) for run in found if _in_group(run, group)]
    except UserError:
        raise
    except Exception as err:  # network, authentication, unknown project: the user's to fix
        raise UserError(f"could not read runs of {path} from W&B: {type(err).__name__}: {err}") from None
    runs = runs_frame(records, job_type=job_type)
    if runs.empty:
        where = f"{path}" + (f" (group {group!r})" if group else "")
        raise UserError(f"no W&B run of job type {job_type!r} found in {where}")
    return runs
