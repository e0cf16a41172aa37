"""A study of many jobs on a SLURM cluster (``make scale-check``): one array job of ``--jobs`` tasks of
``trainer.fast_dev_run=true`` (one batch of each split), at most ``--throttle`` at once.

It checks what changes with the number of jobs, and exits 1 naming what failed:

* every job wrote its ``summary.json`` with ``status: ok``;
* the preprocessing cache was built by one job and loaded by all the others (its lock);
* the comparison report (``python -m lanmsff.analysis``) counts every run;

and prints the scheduler's cost per job from ``sacct``: the wait in the queue, and the time a job held
its allocation beyond what the run itself took (process start, imports, submitit, the epilogue).

    python scripts/slurm/scale_check.py [--jobs 100] [--throttle 2] [--out DIR] [--keep]

It needs a controller that answers (``scripts/slurm/start.sh`` starts a local one) and runs in a
temporary folder under /var/tmp unless ``--out`` names one (visible to every node on a real cluster).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ["data=kdef_synthetic", "data.identities=4", "data.num_folds=2", "model.net.widths=[12,12,12,12]", "logger=csv"]
BUILT = "Wrote preprocessed faces to cache"
LOADED = "preprocessed faces from cache"  # "Loaded <n> preprocessed faces from cache <file>"


def _sh(*command: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100, help="array tasks (seeds 0..jobs-1)")
    parser.add_argument("--throttle", type=int, default=2, help="at most this many at once (--array=...%%N)")
    parser.add_argument("--out", type=Path, help="the study's folder (default: a new one under /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the folder (always kept when --out is given)")
    parser.add_argument("--partition", default=os.environ.get("LANMSFF_SLURM_PARTITION"))
    parser.add_argument("--account", default=os.environ.get("LANMSFF_SLURM_ACCOUNT"))
    return parser.parse_args(argv)


def _seconds(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp).timestamp()


def _sacct(job: str) -> list[dict[str, str]]:
    fields = ("JobID", "State", "Submit", "Start", "End")
    done = _sh("sacct", "-n", "-P", "-X", "-j", job, "-o", ",".join(fields))
    return [dict(zip(fields, line.split("|"), strict=True)) for line in done.stdout.splitlines() if line]


def _launch(args: argparse.Namespace, folder: Path) -> tuple[int, float]:
    launcher = [
        "hydra/launcher=slurm_cpu",
        *([f"hydra.launcher.partition={args.partition}"] if args.partition else []),
        *([f"hydra.launcher.account={args.account}"] if args.account else []),
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=2",
        "hydra.launcher.timeout_min=20",
        f"hydra.launcher.array_parallelism={args.throttle}",
    ]
    command = [sys.executable, str(ROOT / "train.py"), "-m", *launcher, *TINY, "trainer.fast_dev_run=true"]
    command += ["task_name=scale_check", f"seed=range(0,{args.jobs})"]
    env = {**os.environ, "LANMSFF_ROOT": str(folder), "PYTHONWARNINGS": "ignore", "LANMSFF_QUIET": "1"}
    start = time.monotonic()
    with open(folder / "launcher.log", "w") as log:
        status = subprocess.run(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    return status, time.monotonic() - start


def _check(folder: Path, jobs: int) -> tuple[list[str], dict[str, float]]:
    """What failed, and the numbers to print."""
    problems: list[str] = []
    [multirun] = (folder / "logs" / "scale_check" / "multiruns").iterdir()
    summaries = [json.loads(p.read_text()) for p in multirun.glob("*/summary.json")]
    ok = [s for s in summaries if s["status"] == "ok"]
    if len(ok) != jobs:
        problems.append(f"{len(ok)} of {jobs} jobs wrote an ok summary.json ({len(summaries)} summaries)")
    logs = [p.read_text(errors="replace") for p in (multirun / ".submitit").rglob("*_log.err")]
    built, loaded = sum(BUILT in text for text in logs), sum(LOADED in text for text in logs)
    caches = list((folder / ".cache" / "lanmsff").glob("*.npz"))
    if built != 1 or loaded != jobs - 1 or len(caches) != 1:
        problems.append(f"cache built by {built} job(s), loaded by {loaded}, {len(caches)} cache file(s)")
    report = folder / "report"
    # --allow-mixed: what is checked is that the report covers every run; a source tree edited while the
    # study ran gives runs of several code revisions, which the report then names instead of refusing
    compared = _sh(
        sys.executable, "-m", "lanmsff.analysis", str(multirun), "--out", str(report), "--allow-mixed", timeout=600
    )
    if compared.returncode != 0:
        problems.append(f"the report failed: {compared.stderr[-500:]}")
    else:
        with open(report / "comparison.csv") as f:
            counted = sum(int(row["runs"]) + int(row["failed"]) for row in csv.DictReader(f))
        if counted != jobs:
            problems.append(f"the report counts {counted} runs, not {jobs}")
    array = {p.name.split("_")[0] for p in (multirun / ".submitit").iterdir() if "_" in p.name}
    records = [r for job in array for r in _sacct(job) if "_" in r["JobID"] and r["Start"] not in ("", "Unknown")]
    runtime = {s["slurm"]["job_id"]: s["duration_s"] for s in summaries if s.get("slurm")}
    waits = [_seconds(r["Start"]) - _seconds(r["Submit"]) for r in records]
    held = [_seconds(r["End"]) - _seconds(r["Start"]) - runtime[r["JobID"]] for r in records if r["JobID"] in runtime]
    numbers = {
        "jobs with accounting": len(records),
        "run time per job (mean, s)": statistics.mean(runtime.values()) if runtime else float("nan"),
        "allocation beyond the run per job (mean, s)": statistics.mean(held) if held else float("nan"),
        "allocation beyond the run per job (max, s)": max(held) if held else float("nan"),
        "queue wait per job (mean, s)": statistics.mean(waits) if waits else float("nan"),
    }
    return problems, numbers


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if _sh("scontrol", "ping").returncode != 0 if shutil.which("scontrol") else True:
        print("error: no SLURM controller answers; start the local one: scripts/slurm/start.sh", file=sys.stderr)
        return 2
    folder = args.out or Path(tempfile.mkdtemp(prefix="lanmsff-scale-", dir="/var/tmp"))
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    generator = Path(sys.executable).with_name("lanmsff-synthetic")
    made = _sh(str(generator), "--out", str(folder / "data" / "kdef_synthetic"), "--identities", "4", timeout=600)
    if made.returncode != 0:
        print(f"error: generating the data failed: {made.stderr[-1000:]}", file=sys.stderr)
        return 1
    what = f"{args.jobs} array tasks of trainer.fast_dev_run=true, at most {args.throttle} at once"
    print(f"scale check: {what}, in {folder}")
    status, wall = _launch(args, folder)
    problems = [f"train.py -m exited with {status} (see {folder / 'launcher.log'})"] if status else []
    more, numbers = _check(folder, args.jobs)
    problems += more
    print(f"  wall time of the study: {wall:.0f} s, {wall / args.jobs:.1f} s per job")
    for name, value in numbers.items():
        print(f"  {name}: {value:.1f}" if isinstance(value, float) else f"  {name}: {value}")
    for problem in problems:
        print(f"FAILED: {problem}")
    if not problems:
        print(f"ok: {args.jobs} summaries, the cache built once, the report covers every run")
    if not (args.out or args.keep or problems):
        shutil.rmtree(folder, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
