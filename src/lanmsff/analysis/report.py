"""The comparison report: read every run's ``summary.json`` (or W&B runs), aggregate per variant, write it.

Its command line is ``python -m lanmsff.compare`` (:mod:`lanmsff.analysis.cli`).

    runs = load_runs(["logs/kdef_ablation/multiruns"])  # one row per run, failed ones included
    table = summarise(runs)                              # one row per study x variant: mean/std, cost
    paths = write_report(runs, "logs/kdef_ablation/report")

Accuracies are fractions in [0, 1] in the data frames and CSV files and percentages in the tables.
``std`` is the sample standard deviation (ddof=1) over the successful runs of a variant (its folds
and seeds); it is empty for a single run. Only ``job_type == "train"`` runs are compared by default.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from lanmsff.data.kdef_names import ANGLES
from lanmsff.errors import UserError
from lanmsff.records import SUMMARY_FILE, read_summary
from lanmsff.utils.io import atomic_write, atomic_write_text

log = logging.getLogger(__name__)

METRIC_PREFIXES = ("test/", "val/", "train/")
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
    "source",
]
OBJECT_COLUMNS = ["classes", "confusion_matrix"]  # kept in the data frame, not in runs.csv
COST_COLUMNS = ["params", "flops", "model_size_mb"]
JOB_TYPES = ("train", "eval", "all")


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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def record_from_summary(summary: Mapping[str, Any], source: str = "") -> dict[str, Any]:
    """One flat record (a row of :func:`load_runs`) from the contents of a ``summary.json``.

    ``study``, ``variant``, ``fold`` and ``seed`` fall back to ``config.task_name``, ``config.variant``
    or ``config.model.name``, ``config.data.fold`` and ``config.seed`` for files that lack them.
    Metrics become columns under their own names (``test/acc``, ``test/acc_FL``, ...).
    """
    config = summary.get("config") or {}
    data = summary.get("data") or {}
    status = str(summary.get("status") or "unknown")
    metrics = {k: float(v) for k, v in (summary.get("metrics") or {}).items() if _is_number(v)}
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
        "source": source,
        "classes": data.get("classes"),
        "confusion_matrix": summary.get("confusion_matrix"),
        **metrics,
    }


def _metric_key(column: str) -> tuple[int, int, str]:
    """Order of metric columns: accuracy, macro F1, per angle (FL HL S HR FR), the rest by name."""
    fixed = {"test/acc": 0, "test/f1_macro": 1}
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
    for column in ("fold", "seed", "params", "flops"):
        runs[column] = pd.to_numeric(runs[column], errors="coerce").round().astype("Int64")
    metrics = sorted((c for c in runs if c.startswith(METRIC_PREFIXES)), key=_metric_key)
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
def _unwrap_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """W&B's raw config stores ``{"value": x, "desc": ...}`` per key; the public API usually unwraps it."""
    return {k: v["value"] if isinstance(v, Mapping) and "value" in v else v for k, v in config.items()}


def _summary_dict(summary: Any) -> dict[str, Any]:
    raw = getattr(summary, "_json_dict", None)
    return dict(raw if isinstance(raw, Mapping) else (summary or {}))


def wandb_record(run: Any) -> dict[str, Any]:
    """A run record (as :func:`record_from_summary` makes) from a W&B public-API run.

    Uses ``run.config`` (the logged Hydra config plus params/flops/model_size_mb), ``run.summary``
    (final metrics), ``run.state`` (``finished`` is ok; anything else counts as not ok) and
    ``run.name``. W&B holds no confusion matrix as numbers, so that column stays empty.
    """
    config = _unwrap_config(dict(getattr(run, "config", None) or {}))
    summary = _summary_dict(getattr(run, "summary", None))
    state = str(getattr(run, "state", "") or "unknown").lower()
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
    }
    source = "wandb:" + "/".join(map(str, getattr(run, "path", None) or [run.name]))  # entity/project/id
    return record_from_summary(record, source)


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
    """Runs of the W&B project ``path`` (``ENTITY/PROJECT``), of one ``group`` (study) if given.

    ``api`` defaults to ``wandb.Api()``; raises :class:`UserError` when offline, without an API key,
    when W&B cannot be reached, or when no run matches.
    """
    if path.count("/") != 1 or not all(path.split("/")):
        raise UserError(f"--wandb {path!r}: expected ENTITY/PROJECT, e.g. my-team/lanmsff")
    api = api or _wandb_api()
    try:
        records = [wandb_record(run) for run in api.runs(path, filters={"group": group} if group else {})]
    except UserError:
        raise
    except Exception as err:  # network, authentication, unknown project: the user's to fix
        raise UserError(f"could not read runs of {path} from W&B: {type(err).__name__}: {err}") from None
    runs = runs_frame(records, job_type=job_type)
    if runs.empty:
        where = f"{path}" + (f" (group {group!r})" if group else "")
        raise UserError(f"no W&B run of job type {job_type!r} found in {where}")
    return runs


# ---------------------------------------------------------------------------------------------- aggregation
def summary_metrics(runs: pd.DataFrame) -> list[str]:
    """The metrics a comparison reports: accuracy, macro F1, accuracy per angle, best val accuracy."""
    per_angle = sorted((c for c in runs if c.startswith("test/acc_")), key=_metric_key)
    return [m for m in ("test/acc", "test/f1_macro", *per_angle, "val/acc_best") if m in runs]


def metric_name(metric: str) -> str:
    """Column stem in :func:`summarise`: ``test/acc`` -> ``acc``, ``test/acc_FL`` -> ``acc_FL``,
    ``val/acc_best`` -> ``val_acc_best``."""
    return metric.removeprefix("test/").replace("/", "_")


def _most_common(values: pd.Series) -> Any:
    values = values.dropna()
    return values.mode().iloc[0] if len(values) else None


def _summarise_variant(group: pd.DataFrame, metrics: Sequence[str]) -> dict[str, Any]:
    ok = group[group["status"] == "ok"]
    row: dict[str, Any] = {
        "study": group["study"].iloc[0],
        "variant": group["variant"].iloc[0],
        "runs": len(ok),
        "failed": len(group) - len(ok),
    }
    for metric in metrics:
        values = pd.to_numeric(ok[metric], errors="coerce").dropna()
        row[f"{metric_name(metric)}_mean"] = values.mean() if len(values) else math.nan
        row[f"{metric_name(metric)}_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
    for column in COST_COLUMNS:
        row[column] = _most_common(ok[column] if len(ok) else group[column])
    return row


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (study, variant): ``runs`` (ok), ``failed`` (every other status), ``<metric>_mean``
    and ``<metric>_std`` for :func:`summary_metrics` (named by :func:`metric_name`), and the cost
    ``params``, ``flops`` (per image) and ``model_size_mb``.
    """
    metrics = summary_metrics(runs)
    rows = [_summarise_variant(g, metrics) for _, g in runs.groupby(["study", "variant"], sort=True)]
    columns = ["study", "variant", "runs", "failed"]
    columns += [f"{metric_name(m)}_{s}" for m in metrics for s in ("mean", "std")] + COST_COLUMNS
    table = pd.DataFrame(rows, columns=columns)
    for column in ("params", "flops"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    return table


def mean_confusion(runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None, list[str]] | None:
    """Mean and sample std (``None`` for one run) of the row-normalised test confusion matrices of
    the ok runs (those of the first one's shape), with the class names; ``None`` when no run has one.
    """
    matrices = [np.asarray(m, float) for m in runs.loc[runs["status"] == "ok", "confusion_matrix"] if _is_matrix(m)]
    if not matrices:
        return None
    matrices = [m for m in matrices if m.shape == matrices[0].shape]
    rates = np.stack([m / np.clip(m.sum(axis=1, keepdims=True), 1, None) for m in matrices])
    classes = next((c for c in runs["classes"] if isinstance(c, list) and len(c) == len(rates[0])), None)
    std = rates.std(axis=0, ddof=1) if len(rates) > 1 else None
    return rates.mean(axis=0), std, [str(c) for c in classes or range(len(rates[0]))]


def _is_matrix(value: Any) -> bool:
    return (
        isinstance(value, list) and len(value) > 0 and all(isinstance(r, list) and len(r) == len(value) for r in value)
    )


# ---------------------------------------------------------------------------------------------- tables
def _pct(mean: Any, std: Any) -> str:
    if mean is None or pd.isna(mean):
        return "–"
    return f"{100 * mean:.2f}" + ("" if std is None or pd.isna(std) else f" ± {100 * std:.2f}")


def _count(value: Any, fmt: str = "{:,.0f}", scale: float = 1.0) -> str:
    return "–" if value is None or pd.isna(value) else fmt.format(float(value) * scale)


def display_table(summary: pd.DataFrame, study: str) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted rows of one study's comparison (percentages, GFLOPs, MiB)."""
    rows = summary[summary["study"] == study]
    metrics = [c[: -len("_mean")] for c in rows if c.endswith("_mean") and rows[c].notna().any()]
    labels = {"acc": "accuracy %", "f1_macro": "macro F1 %", "val_acc_best": "best val acc %"}
    headers = ["variant", "runs", "failed", *(labels.get(m, m.removeprefix("acc_")) for m in metrics)]
    headers += ["params", "GFLOPs", "size MiB"]
    body = [
        [str(r["variant"]), str(r["runs"]), str(r["failed"])]
        + [_pct(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics]
        + [_count(r["params"]), _count(r["flops"], "{:.3f}", 1e-9), _count(r["model_size_mb"], "{:.2f}")]
        for _, r in rows.iterrows()
    ]
    return headers, body


def failed_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose status is not ok, with their errors."""
    return runs.loc[runs["status"] != "ok", ["study", "variant", "fold", "seed", "status", "error", "source"]]


def print_tables(summary: pd.DataFrame, console: Console | None = None) -> None:
    """Print one rich table per study (accuracies as mean ± std in %)."""
    console = console or Console()
    for study in summary["study"].unique():
        headers, body = display_table(summary, study)
        table = Table(title=f"{study}: mean ± std over folds/seeds")
        for i, header in enumerate(headers):
            table.add_column(header, justify="left" if i == 0 else "right", overflow="fold")
        for row in body:
            table.add_row(*row)
        console.print(table)


# ---------------------------------------------------------------------------------------------- figures
def slug(name: str) -> str:
    """A file-name-safe version of ``name`` (with a short hash when characters had to be replaced)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "x"
    return safe if safe == name else f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def _per_angle(summary: pd.DataFrame) -> tuple[list[str], dict[str, list[float]], dict[str, list[float]]]:
    stems = ["acc"] + [c[: -len("_mean")] for c in summary if re.fullmatch(r"acc_.+_mean", c)]
    stems = [s for s in stems if f"{s}_mean" in summary and summary[f"{s}_mean"].notna().any()]
    groups = ["all" if s == "acc" else s.removeprefix("acc_") for s in stems]
    means = {r["variant"]: [r[f"{s}_mean"] for s in stems] for _, r in summary.iterrows()}
    stds = {r["variant"]: [r[f"{s}_std"] for s in stems] for _, r in summary.iterrows()}
    return groups, means, stds


def _cost_figures(summary: pd.DataFrame, folder: Path) -> dict[str, Path]:
    from lanmsff import plots

    out: dict[str, Path] = {}
    if "acc_mean" not in summary or summary["acc_mean"].isna().all():
        return out
    for key, scale, label in (("params", 1.0, "parameters"), ("flops", 1e-9, "GFLOPs per image")):
        cost = pd.to_numeric(summary[key], errors="coerce").astype(float) * scale
        if (cost > 0).any():
            fig = plots.cost_accuracy_figure(
                list(summary["variant"]),
                cost,
                summary["acc_mean"],
                accuracy_std=summary["acc_std"],
                xlabel=label,
                title=f"Test accuracy vs {label}",
            )
            out[key] = plots.save_figure(fig, folder / f"accuracy_vs_{key}.png")
    return out


def study_figures(runs: pd.DataFrame, summary: pd.DataFrame, folder: Path) -> dict[str, Path]:
    """The figures of one study in ``folder``: accuracy per angle, accuracy vs params and vs FLOPs,
    and the mean confusion matrix of every variant (keys: ``per_angle``, ``params``, ``flops``,
    ``confusion:<variant>``)."""
    from lanmsff import plots

    out: dict[str, Path] = {}
    groups, means, stds = _per_angle(summary)
    if groups:
        fig = plots.grouped_accuracy_figure(means, groups, stds=stds, title="Test accuracy per angle")
        out["per_angle"] = plots.save_figure(fig, folder / "accuracy_per_angle.png")
    out.update(_cost_figures(summary, folder))
    for variant, group in runs.groupby("variant", sort=True):
        if (confusion := mean_confusion(group)) is not None:
            mean, std, classes = confusion
            fig = plots.rate_matrix_figure(mean, classes, std=std, title=f"{variant}: mean confusion (rows: true)")
            out[f"confusion:{variant}"] = plots.save_figure(fig, folder / f"confusion_{slug(variant)}.png")
    return out


# ---------------------------------------------------------------------------------------------- report
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1400px;
       color: #222; background: #fff; padding: 0 1em; }
h1 { border-bottom: 2px solid #4c72b0; padding-bottom: .2em; }
h2 { margin-top: 2em; color: #2b4a7e; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; white-space: nowrap; }
.scroll { overflow-x: auto; }
th { background: #eef2f8; }
td:first-child, th:first-child { text-align: left; font-weight: 600; }
tr:nth-child(even) td { background: #fafafa; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; border: 1px solid #ddd; padding: .5em; background: #fff; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 13px; color: #555; margin-top: .3em; }
.note { color: #555; font-size: 14px; }
td.error { text-align: left; font-family: monospace; font-size: 12px; white-space: normal; min-width: 30em; }
"""
NOTE = (
    "Accuracies in % on the test split, mean ± sample standard deviation (ddof=1) over the successful "
    "runs of each variant (its folds and seeds); runs = successful runs, failed = the others. "
    "Per-angle columns only where the test sets hold that angle. GFLOPs and params per image."
)


def _caption(key: str) -> str:
    captions = {"per_angle": "Accuracy per angle", "params": "Accuracy vs parameters", "flops": "Accuracy vs FLOPs"}
    return captions.get(key) or f"Mean row-normalised confusion matrix: {key.removeprefix('confusion:')}"


def _sections(runs: pd.DataFrame, summary: pd.DataFrame, out: Path) -> list[dict[str, Any]]:
    """Per study: its table and its figures (written now) as (caption, path relative to ``out``, path)."""
    sections = []
    for study in summary["study"].unique():
        rows = summary[summary["study"] == study]
        figures = study_figures(runs[runs["study"] == study], rows, out / "figures" / slug(study))
        headers, body = display_table(summary, study)
        items = [(_caption(k), p.relative_to(out).as_posix(), p) for k, p in figures.items()]
        sections.append({"study": study, "headers": headers, "rows": body, "figures": items})
    return sections


def _failed_table(runs: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    failed = failed_runs(runs)
    headers = ["study", "variant", "fold", "seed", "status", "error", "summary"]
    rows = [["" if pd.isna(v) else str(v) for v in row] for row in failed.itertuples(index=False)]
    return headers, rows


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, headers)) + " |", "|---" + "|---:" * (len(headers) - 1) + "|"]
    return lines + ["| " + " | ".join(map(cell, row)) + " |" for row in rows]


def _intro(runs: pd.DataFrame, summary: pd.DataFrame) -> str:
    ok = int((runs["status"] == "ok").sum())
    return (
        f"Runs: {len(runs)} ({ok} ok, {len(runs) - ok} failed or unfinished); studies: {summary['study'].nunique()}; "
        f"study x variant rows: {len(summary)}. Generated {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC."
    )


def render_markdown(title: str, intro: str, sections: list[dict[str, Any]], failed: tuple) -> str:
    """``report.md``: the tables in markdown with links to the PNG figures next to it."""
    lines = [f"# {title}", "", intro, "", NOTE, ""]
    for section in sections:
        lines += [f"## {section['study']}", "", *_md_table(section["headers"], section["rows"]), ""]
        lines += [f"![{caption}]({rel})" for caption, rel, _ in section["figures"]] + [""]
    if failed[1]:
        lines += ["## Failed runs", "", *_md_table(*failed), ""]
    return "\n".join(lines)


def _html_row(row: Sequence[str], error_column: int | None) -> str:
    cells = []
    for i, value in enumerate(row):
        css = ' class="error"' if i == error_column else ""
        cells.append(f"<td{css}>{html.escape(str(value))}</td>")
    return "<tr>" + "".join(cells) + "</tr>"


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], error_column: int | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(_html_row(row, error_column) for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _html_figure(caption: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    text = html.escape(caption, quote=True)
    image = f'<img alt="{text}" src="data:image/png;base64,{data}">'
    return f"<figure>{image}<figcaption>{text}</figcaption></figure>"


def render_html(title: str, intro: str, sections: list[dict[str, Any]], failed: tuple) -> str:
    """``report.html``: the same tables and figures in one self-contained file (PNGs as base64 data
    URIs, inline CSS, no script, font or link to fetch)."""
    parts = [f"<h1>{html.escape(title)}</h1>", f'<p class="note">{html.escape(intro)}</p>']
    parts.append(f'<p class="note">{html.escape(NOTE)}</p>')
    for section in sections:
        figures = "".join(_html_figure(caption, path) for caption, _, path in section["figures"])
        parts += [
            f"<section><h2>{html.escape(section['study'])}</h2>",
            _html_table(section["headers"], section["rows"]),
        ]
        parts.append(f'<div class="figs">{figures}</div></section>')
    if failed[1]:
        parts += ["<section><h2>Failed runs</h2>", _html_table(*failed, error_column=5), "</section>"]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda f: frame.to_csv(f, index=False), binary=False)


def write_report(runs: pd.DataFrame, out_dir: str | Path, *, title: str = "lanmsff comparison") -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, ``comparison.csv``, ``runs.csv`` and ``figures/<study>/*.png``
    into ``out_dir`` (every file atomically). Returns the paths keyed by their path relative to ``out_dir``.
    """
    if runs.empty:
        raise UserError("no runs to report")
    out = Path(out_dir)
    summary = summarise(runs)
    sections = _sections(runs, summary, out)
    failed, intro = _failed_table(runs), _intro(runs, summary)
    paths = {rel: path for section in sections for _, rel, path in section["figures"]}
    paths["comparison.csv"] = _write_csv(summary, out / "comparison.csv")
    paths["runs.csv"] = _write_csv(runs.drop(columns=OBJECT_COLUMNS), out / "runs.csv")
    paths["report.md"] = atomic_write_text(out / "report.md", render_markdown(title, intro, sections, failed))
    paths["report.html"] = atomic_write_text(out / "report.html", render_html(title, intro, sections, failed))
    return paths
