"""A run record (the ``summary.json`` schema, :mod:`lanmsff.records`) as W&B holds it, and back.

The comparison report reads the same record from a run folder or from W&B, so that both give the
same verdicts by construction:

* :func:`record_to_wandb` turns the record into what the run logs to W&B: its ``config`` (the run
  config, the identity and protocol labels flat beside it for W&B's filters, and the record's other
  fields under ``lanmsff_record``) and its ``summary`` (every metric of the record under its own name,
  and the record's results, :data:`SUMMARY_FIELDS`, under ``lanmsff_record``);
* :func:`record_from_wandb` turns a W&B run's config and summary back into that record
  (:func:`lanmsff.analysis.loading.wandb_record` reads runs of the public API with it).

W&B keeps config and summary as JSON, so the record's JSON values come back as they went in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

RECORD_KEY = "lanmsff_record"
# the record's results, which go to the W&B summary; every other field but config and metrics (the run's
# identity, data block, provenance, and whatever a newer record adds) goes to the W&B config
SUMMARY_FIELDS = (
    "status",
    "error",
    "restarts",
    "params",
    "flops",
    "model_size_mb",
    "duration_s",
    "best_ckpt",
    "resumed_from",
    "confusion_matrix",
    "confusion_matrix_per_group",
    "temperature",
    "cross_test",
    "class_mapping",
)
# beside the run config (where it has no such key), to filter and group by in W&B
FLAT_LABELS = ("study", "variant", "fold", "seed", "selection")
FLAT_DATA_LABELS = ("protocol", "protocol_version", "identities_shared", "n_train", "n_test")


class WandbRecord(NamedTuple):
    """What a run logs to W&B: ``wandb.config`` and ``wandb.summary``."""

    config: dict[str, Any]
    summary: dict[str, Any]


def _data_labels(data: Mapping[str, Any]) -> dict[str, Any]:
    sizes = {"n_train": data.get("train_images", data.get("train")), "n_test": data.get("test")}
    return {key: sizes[key] if key in sizes else data.get(key) for key in FLAT_DATA_LABELS}


def record_to_wandb(record: Mapping[str, Any]) -> WandbRecord:
    """The W&B config and summary of a run record (a ``summary.json``'s contents)."""
    metrics = dict(record.get("metrics") or {})
    run_config = dict(record.get("config") or {})
    labels = {key: record.get(key) for key in FLAT_LABELS} | _data_labels(record.get("data") or {})
    flat = {key: value for key, value in labels.items() if key not in run_config}
    described = {k: v for k, v in record.items() if k not in (*SUMMARY_FIELDS, "config", "metrics")}
    config = {**run_config, **flat, RECORD_KEY: {**described, "flat_labels": sorted(flat)}}
    results = {key: record[key] for key in SUMMARY_FIELDS if key in record}
    summary = {**metrics, RECORD_KEY: {**results, "metric_names": sorted(metrics)}}
    return WandbRecord(config, summary)


def unwrap_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """W&B's raw config stores ``{"value": x, "desc": ...}`` per key; the public API usually unwraps it."""
    return {
        k: v["value"] if isinstance(v, Mapping) and set(v) <= {"value", "desc"} and "value" in v else v
        for k, v in config.items()
    }


def has_record(config: Mapping[str, Any]) -> bool:
    """Whether a W&B run's config holds a record (runs logged before it did hold only flat labels)."""
    return isinstance(unwrap_config(config).get(RECORD_KEY), Mapping)


def record_from_wandb(config: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, Any]:
    """The run record (``summary.json`` schema) of a W&B run's config and summary, as
    :func:`record_to_wandb` logged it."""
    config = unwrap_config(config)
    described = dict(config.get(RECORD_KEY) or {})
    results = dict(summary.get(RECORD_KEY) or {})
    names = results.pop("metric_names", [])
    flat = set(described.pop("flat_labels", []))
    run_config = {k: v for k, v in config.items() if k not in flat and k != RECORD_KEY}
    return {
        **described,
        **results,
        "config": run_config,
        "metrics": {name: summary[name] for name in names if name in summary},
    }
