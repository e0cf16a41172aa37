"""The results files: one per CPU kind and date, ``benchmarks/results/<cpu-kind>-<YYYY-MM-DD>.json``.

A results file holds every run of the benchmark on one CPU kind on one date (UTC)::

    {"schema": 1, "cpu_kind": "amd-f25-avx2", "date": "2026-12-03", "runs": [{...}, ...]}

Each run is what ``python -m benchmarks`` measured (``machine``, ``settings``, ``models``,
``versus_tf``, ...) plus ``date``, ``started`` and ``command``. Runs transcribed from older records
also carry ``source`` (where the numbers were copied from) and may hold only some of the parts, and
parts the benchmark does not measure (``demo_runs``, ``training_options``, ``findings``).
:func:`problems` says what a file lacks for :mod:`benchmarks.tables`, which renders them.

The CPU kind (:func:`cpu_kind`) is a short name of the CPU from the facts that decide the code
paths: the vendor, the CPU family where it tells CPUs with the same model name apart (AMD), the
widest vector extension (``avx512bf16``, ``avx512``, ``avx2``) and AMX: e.g.
``intel-avx512bf16-amx``, ``amd-f25-avx2``, ``amd-f26-avx512bf16``. A run whose kernels were limited
(``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``) or whose bf16 answer was overridden
(``LANMSFF_NATIVE_BF16``) stands in for another CPU and gets a kind of its own
(``...-limited-avx2``, ``...-bf16-off``), so its numbers never mix with the CPU's own.

Nothing here imports torch: the generator of the speed tables reads these files quickly.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lanmsff.utils.io import atomic_write_json

SCHEMA = 1
RESULTS_DIR = Path(__file__).resolve().parent / "results"
FILE_NAME = re.compile(r"^(?P<kind>[a-z0-9]+(?:-[a-z0-9]+)*)-(?P<date>\d{4}-\d{2}-\d{2})\.json$")
BASELINE = "eager fp32 NCHW"  # every "vs eager" ratio is against this path of the same run
VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}


class ResultsError(ValueError):
    """A results file that cannot be read or extended."""


# ----------------------------------------------------------------------------- the CPU kind
def cpu_kind(machine: Mapping[str, Any]) -> str:
    """The CPU kind of ``machine`` (:func:`lanmsff.runtime.hardware.cpu_description`, or a run's ``machine``)."""
    vendor_id, family = _vendor_and_family(str(machine.get("cpu_id", "unknown")))
    vendor = VENDORS.get(vendor_id, re.sub(r"[^a-z0-9]+", "", vendor_id.lower()) or "unknown")
    flags = set(machine.get("flags", ())) | set(machine.get("bf16_flags", ()))
    parts = [vendor]
    if vendor != "intel" and family is not None:  # Intel's family is 6 for every CPU here; AMD's tells Zen 3/4 from 5
        parts.append(f"f{family}")
    if "avx512_bf16" in flags:
        parts.append("avx512bf16")
    elif "avx512f" in flags:
        parts.append("avx512")
    elif "avx2" in flags:
        parts.append("avx2")
    if flags & {"amx_bf16", "amx_tile"}:
        parts.append("amx")
    limits = machine.get("isa_limits") or {}
    if limits:
        parts += ["limited", str(machine.get("capability") or next(iter(limits.values()))).lower()]
    override = machine.get("native_bf16_override")
    native = bool(flags & {"avx512_bf16", "amx_bf16"})
    if not limits and override in ("0", "1") and (override == "1") != native:  # limits already mark a stand-in
        parts += ["bf16", "on" if override == "1" else "off"]
    return "-".join(re.sub(r"[^a-z0-9]+", "", part) for part in parts)


def _vendor_and_family(cpu_id: str) -> tuple[str, int | None]:
    """``("AuthenticAMD", 25)`` from ``"AuthenticAMD family 25 model 1"`` (:func:`lanmsff.runtime.hardware.cpu_id`)."""
    match = re.match(r"^(\S+) family (\d+)", cpu_id)
    return (match.group(1), int(match.group(2))) if match else (cpu_id.split()[0] if cpu_id else "unknown", None)


def describe_kind(kind: str) -> str:
    """Plain words for a CPU kind: ``amd-f25-avx2`` -> ``AMD, CPU family 25, AVX2 only``."""
    words, parts = [], kind.split("-")
    names = {"intel": "Intel", "amd": "AMD", "avx512bf16": "AVX-512 with BF16", "avx512": "AVX-512 without BF16"}
    names |= {"avx2": "AVX2 only", "amx": "AMX"}
    index = 0
    while index < len(parts):
        part = parts[index]
        if part == "limited" and index + 1 < len(parts):
            words.append(f"kernels limited to {parts[index + 1].upper()} (a stand-in for another CPU, not its speed)")
            index += 2
            continue
        if part == "bf16" and index + 1 < len(parts):
            words.append(f"native bf16 switched {parts[index + 1]} by LANMSFF_NATIVE_BF16")
            index += 2
            continue
        family = re.fullmatch(r"f(\d+)", part)
        words.append(f"CPU family {family.group(1)}" if family else names.get(part, part))
        index += 1
    return ", ".join(words)


# ----------------------------------------------------------------------------- files
@dataclass
class ResultsFile:
    """One results file: its path and contents."""

    path: Path
    data: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.data["cpu_kind"])

    @property
    def date(self) -> str:
        return str(self.data["date"])

    @property
    def runs(self) -> list[dict[str, Any]]:
        return list(self.data["runs"])


def today() -> str:
    """The date (UTC) a run is filed under."""
    return dt.datetime.now(dt.timezone.utc).date().isoformat()


def results_path(results_dir: Path, kind: str, date: str) -> Path:
    return Path(results_dir) / f"{kind}-{date}.json"


def add_run(results_dir: Path, run: dict[str, Any]) -> Path:
    """Append ``run`` (with ``machine`` and ``date``) to its results file, creating the file; returns its path."""
    kind = cpu_kind(run["machine"])
    path = results_path(results_dir, kind, run["date"])
    new = {"schema": SCHEMA, "cpu_kind": kind, "date": run["date"], "runs": []}
    data = read(path).data if path.is_file() else new
    data["runs"].append(run)
    found = problems(data, path.name)
    if found:
        raise ResultsError(f"{path}: " + "; ".join(found))
    atomic_write_json(path, data)
    return path


def read(path: Path) -> ResultsFile:
    """A results file, checked (:func:`problems`); ``ResultsError`` if it is not one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ResultsError(f"{path}: {err}") from err
    found = problems(data, Path(path).name)
    if found:
        raise ResultsError(f"{path}: " + "; ".join(found))
    return ResultsFile(Path(path), data)


def read_all(results_dir: Path = RESULTS_DIR) -> list[ResultsFile]:
    """Every results file in ``results_dir``, by name."""
    return [read(path) for path in sorted(Path(results_dir).glob("*.json"))]


# ----------------------------------------------------------------------------- the schema
def problems(data: Any, name: str | None = None) -> list[str]:
    """What keeps ``data`` (a results file's contents, named ``name``) from being rendered; empty if nothing."""
    if not isinstance(data, dict):
        return ["not a JSON object"]
    found = []
    if data.get("schema") != SCHEMA:
        found.append(f"schema is {data.get('schema')!r}, not {SCHEMA}")
    kind, date = data.get("cpu_kind"), data.get("date")
    if not isinstance(kind, str) or not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", kind):
        found.append(f"cpu_kind {kind!r} is not a CPU kind")
    if not isinstance(date, str) or not _is_date(date):
        found.append(f"date {date!r} is not YYYY-MM-DD")
    if name is not None and f"{kind}-{date}.json" != name:
        found.append(f"the file name {name} is not <cpu_kind>-<date>.json ({kind}-{date}.json)")
    runs = data.get("runs")
    if not isinstance(runs, list) or not runs:
        return [*found, "runs is not a non-empty list"]
    for index, run in enumerate(runs):
        found += [f"run {index + 1}: {problem}" for problem in run_problems(run, kind)]
    return found


def run_problems(run: Any, kind: str | None = None) -> list[str]:
    """What a run lacks: a ``machine``, a ``date``, and numbers where the generator reads them."""
    if not isinstance(run, dict):
        return ["not a JSON object"]
    found = []
    if not isinstance(run.get("machine"), dict):
        found.append("no machine")
    elif kind is not None and "cpu_id" in run["machine"] and cpu_kind(run["machine"]) != kind:
        found.append(f"its machine is of kind {cpu_kind(run['machine'])}, not {kind}")
    if not isinstance(run.get("date"), str) or not _is_date(run["date"]):
        found.append(f"date {run.get('date')!r} is not YYYY-MM-DD")
    for name, model in (run.get("models") or {}).items():
        for part in ("inference", "training"):
            rows = model.get(part, {})
            rows = rows.get("throughput", {}) if part == "inference" else rows
            found += [f"models.{name}.{part}.{label}: {p}" for label, row in rows.items() for p in _row_problems(row)]
    versus = run.get("versus_tf")
    if versus is not None:
        for label, row in versus.get("rows", {}).items():
            found += [f"versus_tf.rows.{label}: {p}" for p in _row_problems(row)]
            if not isinstance(row.get("batch"), int):
                found.append(f"versus_tf.rows.{label}: no batch")
        for ours, tf in (versus.get("pairs") or {}).items():
            if ours not in versus.get("rows", {}) or tf not in versus.get("rows", {}):
                found.append(f"versus_tf.pairs: {ours!r} or {tf!r} is not a row")
    return found


def _row_problems(row: Any) -> list[str]:
    if not isinstance(row, dict):
        return ["not a JSON object"]
    numbers = [row.get(key) for key in ("images_per_s", "ratio", "ratio_vs_default_allocator_baseline")]
    numbers += list(row.get("images_per_s_range") or [])
    if not any(isinstance(value, (int, float)) for value in numbers):
        return ["no images_per_s, images_per_s_range or ratio"]
    return [f"{value!r} is not a positive number" for value in numbers if value is not None and not _positive(value)]


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _is_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", text))


# ----------------------------------------------------------------------------- reading runs
def best_safe_training(rows: Mapping[str, Any], loss: Mapping[str, Any] | None = None) -> str:
    """The fastest training variant whose gradient audit passed (and whose bf16 loss stayed finite)."""
    safe = {
        label: row
        for label, row in rows.items()
        if row.get("conv_grad_audit", {}).get("ok", False)
        and row.get("images_per_s") is not None
        and (loss is None or loss.get(label, {}).get("finite", True))
    }
    return max(safe, key=lambda label: safe[label]["images_per_s"], default=BASELINE)


def first_auto(labels: Iterable[str]) -> str | None:
    """The default ``optimize(precision="auto")`` path among inference labels (eager, micro-batches)."""
    return next(
        (
            label
            for label in labels
            if label.startswith("optimize(auto=") and not any(w in label for w in ("jit", "compile", "whole"))
        ),
        None,
    )
