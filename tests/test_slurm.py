"""The SLURM launcher against a real scheduler: sweeps as one array job, requeue with exact resume, a
sweep that waits for a requeued job's last attempt (one W&B run for all attempts), DDP over SLURM
tasks, Optuna trials in parallel array tasks, scancel, and the cluster scripts.

They run on the throw-away single-node cluster of ``scripts/slurm/start.sh`` (``.ci/run`` starts it
before ``make test`` and stops it afterwards), or on any cluster whose ``sinfo``/``sacct`` answer here,
and are skipped when no controller answers. Every job asks for one CPU (``cpus_per_task=1``): the
cluster binds each task to its core (task/affinity), so two jobs run at once on a 2-core machine and
each trains with one thread. Job folders must be visible to the compute nodes: on a multi-node
cluster set ``LANMSFF_SLURM_TEST_DIR`` to a shared folder.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, TINY_TRAIN, run_script

SCRIPTS = ROOT / "scripts" / "slurm"


def _run(*command: str, timeout: float = 30, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def _unavailable() -> str | None:
    """Why the SLURM tests cannot run here (``None`` when they can)."""
    missing = [c for c in ("sinfo", "scontrol", "sbatch", "sacct", "scancel") if shutil.which(c) is None]
    if missing:
        return f"no SLURM client ({', '.join(missing)} missing); start one with sudo scripts/slurm/start.sh"
    try:
        ping = _run("scontrol", "ping", timeout=20)
        if ping.returncode != 0 or "UP" not in ping.stdout:
            said = (ping.stdout + ping.stderr).strip().splitlines() or [""]
            return f"no SLURM controller answers (scontrol ping: {said[-1][:160]}); sudo scripts/slurm/start.sh"
        accounting = _run("sacct", "-n", "-X", "--starttime=now-1minutes", timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"SLURM does not answer: {err}"
    if accounting.returncode != 0:
        return f"SLURM has no accounting (sacct: {accounting.stderr.strip()[:200]}); submitit cannot see job states"
    return None


pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _default_partition() -> str | None:
    listed = _run("sinfo", "-h", "-o", "%P").stdout.split()
    default = [p.rstrip("*") for p in listed if p.endswith("*")]
    return os.environ.get("LANMSFF_SLURM_PARTITION") or (default or listed or [None])[0]


def _default_account() -> str | None:
    if os.environ.get("LANMSFF_SLURM_ACCOUNT") or not shutil.which("sacctmgr"):
        return os.environ.get("LANMSFF_SLURM_ACCOUNT")
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or "root"
    shown = _run("sacctmgr", "-n", "-P", "show", "user", user, "format=defaultaccount").stdout.split()
    return shown[0] if shown else None


@pytest.fixture(scope="module", autouse=True)
def launcher() -> list[str]:
    """The launcher overrides of every job, or a skip when no SLURM controller answers (asked only
    when a test here runs, never at collection)."""
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    partition, account = _default_partition(), _default_account()
    # what a real cluster needs too: the partition (and account), no GPU, the resources per job
    return [
        "hydra/launcher=slurm_cpu",
        *([f"hydra.launcher.partition={partition}"] if partition else []),
        *([f"hydra.launcher.account={account}"] if account else []),
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=2",
        "hydra.launcher.timeout_min=20",
    ]


TINY = list(TINY_TRAIN)
# epochs of 16 small batches: seconds each, time to interrupt a job between two epochs
RESUMABLE = [*TINY, "data.batch_size=4", "trainer.max_epochs=4", "trainer.deterministic=true", "seed=3"]
COMPARED = ("test/acc", "test/f1_macro", "val/acc_best", "val/loss", "train/loss")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """LANMSFF_ROOT of every test here: one generated dataset and preprocessing cache for all jobs."""
    base = os.environ.get("LANMSFF_SLURM_TEST_DIR")
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
        folder = Path(base) / f"test_slurm_{os.getpid()}"
        folder.mkdir()
    else:
        folder = tmp_path_factory.mktemp("slurm")
    generator = Path(sys.executable).with_name("lanmsff-synthetic")
    if generator.exists():  # else the first jobs generate it themselves
        generated = _run(
            str(generator), "--out", str(folder / "data" / "kdef_synthetic"), "--identities", "4", timeout=300
        )
        assert generated.returncode == 0, generated.stderr[-2000:]
    yield folder
    _cancel_jobs_under(folder)


def _cancel_jobs_under(folder: Path) -> None:
    """Cancel jobs still queued or running from ``folder`` (a failed test must not occupy the node)."""
    listed = _run("squeue", "-h", "-o", "%A %Z").stdout.splitlines()
    ids = [line.split()[0] for line in listed if len(line.split()) == 2 and line.split()[1].startswith(str(folder))]
    if ids:
        _run("scancel", *ids)


@pytest.fixture
def cleanup(workdir: Path) -> Iterator[list[subprocess.Popen]]:
    """Launcher processes of a test; killed, and their jobs cancelled, whatever the test's outcome."""
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    _cancel_jobs_under(workdir)


def _launch(workdir: Path, *overrides: str, log: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``train.py -m`` in the background, as ``conftest.run_script`` runs it (output into ``log``)."""
    env = {**os.environ, "LANMSFF_ROOT": str(workdir), "PYTHONWARNINGS": "ignore", **(env or {})}
    with open(workdir / log, "w") as out:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), "-m", *overrides],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


def _wait(condition: Callable[[], object], what: str, timeout: float = 300, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the launcher exited ({process.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def _multirun(workdir: Path, task: str) -> Path:
    [folder] = (workdir / "logs" / task / "multiruns").iterdir()
    return folder


def _wait_multirun(workdir: Path, task: str, process: subprocess.Popen) -> Path:
    base = workdir / "logs" / task / "multiruns"
    _wait(lambda: base.is_dir() and any(base.iterdir()), f"the multirun folder of {task}", process=process)
    return _multirun(workdir, task)


def _slurm_ids(multirun: Path) -> dict[int, str]:
    """Hydra job number -> SLURM job id (``<array>_<index>`` for array tasks), from submitit's folders."""
    ids: dict[int, str] = {}
    if not (multirun / ".submitit").is_dir():
        return ids
    for folder in (multirun / ".submitit").iterdir():
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        array, _, index = folder.name.partition("_")
        if index:
            ids[int(index)] = folder.name
        elif not any(name.startswith(f"{array}_") for name in os.listdir(multirun / ".submitit")):
            ids[0] = folder.name  # a single job is no array
    return ids


def _sacct(job: str, *fields: str, duplicates: bool = False) -> list[dict[str, str]]:
    """``sacct`` records of a job (allocation only; with ``duplicates``, every requeued run of it)."""
    args = ["sacct", "-n", "-P", "-X", "-j", job, "-o", ",".join(fields)]
    if duplicates:
        args.append("--duplicates")
    lines = _run(*args).stdout.splitlines()
    return [dict(zip(fields, line.split("|"))) for line in lines if line]


def _wait_state(job: str, states: set[str], timeout: float = 120) -> str:
    def done() -> str | None:
        records = _sacct(job, "State")
        state = records[-1]["State"].split()[0] if records else ""
        return state if state in states else None

    return _wait(done, f"job {job} in {sorted(states)}", timeout=timeout)


# the states a job ends in; submitit returns once a job has written its result, which can be a few
# seconds before SLURM's accounting moves the job from RUNNING to one of these
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}


def _final_state(job: str) -> str:
    """The state ``job`` ends in, once SLURM's accounting has it."""
    return _wait_state(job, FINAL_STATES, timeout=120)


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def _summaries(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("summary.json"))]


def test_ablation_sweep_is_one_array_job_and_failures_stay_in_their_job(workdir: Path, launcher: list[str]) -> None:
    """2 variants x 2 folds, plus fold 5 that cannot exist (num_folds=2): six tasks of ONE array job;
    the bad ones fail alone (``status: failed`` in their summary.json), the others complete."""
    result = run_script(
        "train.py",
        "-m",
        *launcher,
        *TINY,
        "trainer.max_epochs=1",
        "task_name=slurm_ablation",
        "model=lanmsff,lanmsff_attn_none",
        "data.fold=0,1,5",
        cwd=workdir,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    multirun = _multirun(workdir, "slurm_ablation")
    ids = _slurm_ids(multirun)
    assert sorted(ids) == list(range(6)) and len({job.split("_")[0] for job in ids.values()}) == 1, ids
    # the jobs catch the bad setting themselves, so SLURM sees every task succeed
    states = {job: _final_state(job) for job in ids.values()}
    assert set(states.values()) == {"COMPLETED"}, states

    runs = {(r["variant"], r["fold"]): r for r in _summaries(multirun)}
    assert sorted(runs) == sorted((v, f) for v in ("lanmsff", "lanmsff_attn_none") for f in (0, 1, 5))
    for (_, fold), run in runs.items():
        if fold == 5:
            assert run["status"] == "failed", run.get("error")
            assert "data.fold=5 must satisfy 0 <= fold < data.num_folds=2" in run["error"]
        else:
            assert run["status"] == "ok", run.get("error")
            assert 0 <= run["metrics"]["test/acc"] <= 1 and run["study"] == "slurm_ablation"

    report = workdir / "report_ablation"
    compared = subprocess.run(
        [sys.executable, "-m", "lanmsff.analysis", str(multirun), "--out", str(report)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert compared.returncode == 0, compared.stderr[-3000:]
    with open(report / "comparison.csv") as f:
        rows = {row["variant"]: row for row in csv.DictReader(f)}
    assert sorted(rows) == ["lanmsff", "lanmsff_attn_none"]
    for variant, row in rows.items():
        ok = [runs[(variant, fold)] for fold in (0, 1)]
        assert row["study"] == "slurm_ablation" and int(row["runs"]) == 2 and int(row["failed"]) == 1
        assert float(row["acc_mean"]) == pytest.approx(sum(r["metrics"]["test/acc"] for r in ok) / 2)
        assert int(row["params"]) == ok[0]["params"]


def test_requeued_jobs_resume_to_exactly_the_uninterrupted_result(
    workdir: Path, launcher: list[str], cleanup: list
) -> None:
    """Four identical jobs of one array: one runs straight; the others are interrupted between two
    epochs by ``scontrol requeue`` (SLURM restarts the job), by submitit's warning signal USR2 (what
    SLURM sends ``signal_delay_s`` before the time limit, and on pre-emption: submitit calls the
    launcher's ``checkpoint()`` and requeues) and by USR1 (another warning signal users configure).
    Each is requeued, continues from ``checkpoints/last.ckpt`` of its own run folder and ends with the
    straight run's metrics bit for bit, in one summary.json that says where it resumed from."""
    ways = ("straight", "requeued", "preempted", "warned")
    process = _launch(
        workdir,
        *launcher,
        *RESUMABLE,
        "task_name=slurm_requeue",
        "hydra.launcher.max_num_timeout=1",
        f"+replica={','.join(ways)}",
        log="slurm_requeue.out",
    )
    cleanup.append(process)
    multirun = _wait_multirun(workdir, "slurm_requeue", process)
    ids = _wait(lambda: len(_slurm_ids(multirun)) == len(ways) and _slurm_ids(multirun), "the array job")
    interrupt = {
        1: ["scontrol", "requeue", ids[1]],
        2: ["scancel", "--signal=USR2", ids[2]],
        3: ["scancel", "--signal=USR1", ids[3]],
    }
    sent: set[int] = set()
    deadline = time.monotonic() + 600
    while len(sent) < len(interrupt):  # interrupt each job once it has written its first last.ckpt
        assert process.poll() is None, (workdir / "slurm_requeue.out").read_text()[-3000:]
        assert time.monotonic() < deadline, f"only jobs {sorted(sent)} were interrupted"
        for num, command in interrupt.items():
            if num not in sent and (multirun / str(num) / "checkpoints" / "last.ckpt").exists():
                time.sleep(0.3)  # into the next epoch
                subprocess.run(command, check=True, capture_output=True, timeout=60)
                sent.add(num)
        time.sleep(0.1)
    assert process.wait(timeout=600) == 0, (workdir / "slurm_requeue.out").read_text()[-3000:]

    straight = _summary(multirun / "0")
    assert straight["status"] == "ok" and straight["resumed_from"] is None and straight["restarts"] == 0
    job_folders = sorted(p.name for p in multirun.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert job_folders == ["0", "1", "2", "3"]  # a requeued job runs again in its own folder
    for num in interrupt:
        run_folder = multirun / str(num)
        assert len(list(run_folder.rglob("summary.json"))) == 1
        resumed = _summary(run_folder)
        assert resumed["status"] == "ok", (ways[num], resumed.get("error"))
        assert resumed["resumed_from"], ways[num]
        assert Path(resumed["resumed_from"]).resolve() == (run_folder / "checkpoints" / "last.ckpt").resolve()
        for key in COMPARED:
            assert resumed["metrics"][key] == straight["metrics"][key], (ways[num], key)
        assert resumed["confusion_matrix"] == straight["confusion_matrix"], ways[num]
        # what the run records about its restart, and what SLURM says
        assert resumed["restarts"] == 1, ways[num]
        assert resumed["slurm"]["job_id"] == ids[num] and resumed["slurm"]["restart_count"] == 1, ways[num]
        _final_state(ids[num])
        runs = [r["State"].split()[0] for r in _sacct(ids[num], "State", duplicates=True)]
        assert runs[0] == "REQUEUED" and runs[-1] == "COMPLETED", (ways[num], runs)
        # no mid-epoch checkpoint of Lightning's own SLURM requeue (it would not resume exactly)
        assert not list(run_folder.glob("hpc_ckpt_*.ckpt")), ways[num]


def test_a_requeued_job_ends_its_sweep_only_after_its_last_attempt_in_one_wandb_run(
    workdir: Path, launcher: list[str], cleanup: list
) -> None:
    """A one-job sweep (nothing else keeps the launcher waiting), ``scontrol requeue`` once its first epoch
    is saved: the first attempt leaves submitit no result, so ``train.py -m`` returns only with the second
    attempt's, whose summary is ok and resumed. W&B (offline) logs both attempts to one run: the id kept
    in the run folder, passed to ``wandb.init`` with ``resume="allow"``, in the group of the sweep; the
    first attempt's W&B service, stopped by the same SIGTERM, costs one warning line, no traceback."""
    task = "slurm_requeue_one"
    longer = ["trainer.max_epochs=6", "logger=default"]  # time to requeue it with epochs still to train
    process = _launch(workdir, *launcher, *RESUMABLE, *longer, f"task_name={task}", log=f"{task}.out")
    cleanup.append(process)
    multirun = _wait_multirun(workdir, task, process)
    run_folder = multirun / "0"
    _wait(lambda: (run_folder / "checkpoints" / "last.ckpt").exists(), "the first epoch", process=process)
    time.sleep(0.3)  # into the next epoch
    job = _wait(lambda: _slurm_ids(multirun).get(0), "the job id")
    subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True, timeout=60)
    assert process.wait(timeout=600) == 0, (workdir / f"{task}.out").read_text()[-3000:]

    summary = _summary(run_folder)  # as the launcher returned: the second attempt's
    assert summary["status"] == "ok" and summary["restarts"] == 1, summary.get("error")
    assert Path(summary["resumed_from"]).resolve() == (run_folder / "checkpoints" / "last.ckpt").resolve()
    runs = [r["State"].split()[0] for r in _sacct(job, "State", duplicates=True)]
    assert runs[0] == "REQUEUED" and _final_state(job) == "COMPLETED", runs
    [out] = (multirun / ".submitit" / job).glob("*_log.out")
    second = out.read_text().rsplit("Starting with JobEnvironment", 1)[1]
    assert "Epoch 5/5" in second, second[-2000:]  # the second attempt trained the last epoch itself

    run_id = (run_folder / "wandb" / "run_id").read_text().strip()
    attempts = sorted((run_folder / "wandb").glob("offline-run-*"))
    assert [p.name.rsplit("-", 1)[1] for p in attempts] == [run_id, run_id]  # one W&B run, two attempts
    inits = [line for line in (run_folder / f"{task}.log").read_text().splitlines() if "W&B init:" in line]
    assert len(inits) == 2, inits
    for line in inits:
        assert f"id={run_id}, resume=allow, group={task}/{multirun.name}, job_type=train" in line, line
    # the confusion matrix as counts and the test predictions as W&B tables, beside the image
    tables = attempts[-1] / "files" / "media" / "table" / "test"
    [counts] = [json.loads(p.read_text()) for p in tables.glob("confusion_counts_*.table.json")]
    [predictions] = [json.loads(p.read_text()) for p in tables.glob("predictions_*.table.json")]
    assert sum(row[2] for row in counts["data"]) == len(predictions["data"]) == summary["data"]["test"]
    job_logs = "".join(p.read_text() for p in (multirun / ".submitit").rglob("*_log.*"))
    assert "Traceback" not in job_logs and "Exception ignored" not in job_logs, job_logs[-3000:]
    assert job_logs.count(f"W&B: run {run_id} not finished, its service process stopped with the job") == 1


def test_ddp_runs_as_two_slurm_tasks_with_one_summary(workdir: Path, launcher: list[str]) -> None:
    """``trainer=ddp_sim hydra.launcher.tasks_per_node=2``: SLURM starts the two ranks (Lightning reads
    them from the SLURM environment); rank 0 writes the one summary.json, with the metrics of the same
    DDP run started without SLURM (one process that spawns its second rank)."""
    ddp = ["trainer=ddp_sim", "trainer.max_epochs=1", "trainer.deterministic=true", "seed=5"]
    result = run_script(
        "train.py",
        "-m",
        *launcher,
        "hydra.launcher.tasks_per_node=2",
        *TINY,
        *ddp,
        "task_name=slurm_ddp",
        cwd=workdir,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    multirun = _multirun(workdir, "slurm_ddp")
    [summary] = _summaries(multirun)
    assert summary["status"] == "ok" and summary["world_size"] == 2
    assert sum(map(sum, summary["confusion_matrix"])) == summary["data"]["test"]  # every test image once
    [job] = _slurm_ids(multirun).values()
    [step] = [r for r in _run("sacct", "-n", "-P", "-j", f"{job}.0", "-o", "JobID,NTasks").stdout.splitlines() if r]
    assert step.split("|")[1] == "2", step  # one job step of two SLURM tasks
    logs = multirun / ".submitit" / job
    for rank in (0, 1):  # each SLURM task is one rank
        text = "".join(p.read_text() for p in logs.glob(f"{job}_{rank}_log.*"))
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in text, text[-2000:]

    local = run_script("train.py", *TINY, *ddp, "task_name=local_ddp", cwd=workdir, timeout=600)
    assert local.returncode == 0, local.stderr[-3000:]
    [reference] = _summaries(workdir / "logs" / "local_ddp")
    assert reference["world_size"] == 2
    for key in COMPARED:
        assert summary["metrics"][key] == pytest.approx(reference["metrics"][key], rel=1e-4, abs=1e-6), key


def _nodes_up() -> int:
    return sum(1 for state in _run("sinfo", "-h", "-N", "-o", "%T").stdout.split() if state.startswith(("idle", "mix")))


def test_ddp_across_two_nodes_matches_ddp_on_one(workdir: Path, launcher: list[str]) -> None:
    """``trainer.num_nodes=2`` through the SLURM launcher (``nodes=2``, one task each): Lightning reads the
    ranks and ``MASTER_ADDR`` (the first node of ``SLURM_NODELIST``) from SLURM, rank 0 alone writes the
    summary, and the metrics are those of ``trainer=ddp_sim`` (two processes, one node) with the same seed
    and global batch. Needs a cluster of two nodes: ``make two-node-check`` starts one (``start.sh --nodes
    2``: the second slurmd in its own network namespace) and runs this test; CI's one-node cluster skips it."""
    if _nodes_up() < 2:
        pytest.skip("needs two SLURM nodes: make two-node-check (scripts/slurm/start.sh --nodes 2)")
    ddp = ["trainer=ddp_sim", "trainer.max_epochs=1", "trainer.deterministic=true", "seed=5"]
    two_nodes = [
        "hydra.launcher.nodes=2",
        "hydra.launcher.tasks_per_node=1",
        # the two ends of the local cluster's veth pair share this name; on a real cluster, leave it to gloo
        'hydra.launcher.setup=["export GLOO_SOCKET_IFNAME=lanmsff0"]',
        "trainer.devices=1",
        "trainer.num_nodes=2",
    ]
    result = run_script(
        "train.py", "-m", *launcher, *TINY, *ddp, *two_nodes, "task_name=slurm_two_nodes", cwd=workdir, timeout=900
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    multirun = _multirun(workdir, "slurm_two_nodes")
    [summary] = _summaries(multirun)
    assert summary["status"] == "ok" and summary["world_size"] == 2
    [job] = _slurm_ids(multirun).values()
    steps = [
        r.split("|") for r in _run("sacct", "-n", "-P", "-j", f"{job}.0", "-o", "JobID,NNodes,NTasks").stdout.split()
    ]
    assert [s[1:] for s in steps if s[0] == f"{job}.0"] == [["2", "2"]], steps  # one step: two nodes, a task each

    local = run_script("train.py", *TINY, *ddp, "task_name=local_ddp_two", cwd=workdir, timeout=600)
    assert local.returncode == 0, local.stderr[-3000:]
    [reference] = _summaries(workdir / "logs" / "local_ddp_two")
    for key in COMPARED:
        assert summary["metrics"][key] == pytest.approx(reference["metrics"][key], rel=1e-4, abs=1e-6), key


def test_optuna_trials_run_in_parallel_array_tasks(workdir: Path, launcher: list[str]) -> None:
    result = run_script(
        "train.py",
        "hparams_search=lanmsff_optuna",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        *launcher,
        *TINY,
        "trainer.max_epochs=2",
        "task_name=slurm_optuna",
        cwd=workdir,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    multirun = _multirun(workdir, "slurm_optuna")
    best = yaml.safe_load((multirun / "optimization_results.yaml").read_text())
    runs = _summaries(multirun)
    assert len(runs) == 2 and {r["status"] for r in runs} == {"ok"}
    assert best["best_value"] == pytest.approx(max(r["metrics"]["val/acc_best"] for r in runs))
    ids = _slurm_ids(multirun)
    assert sorted(ids) == [0, 1] and len({job.split("_")[0] for job in ids.values()}) == 1, ids  # one array
    assert [_final_state(ids[n]) for n in (0, 1)] == ["COMPLETED", "COMPLETED"]
    (a,), (b,) = (_sacct(ids[n], "Start", "End") for n in (0, 1))
    assert a["Start"] < b["End"] and b["Start"] < a["End"], (a, b)  # the two trials ran at the same time


def _cancel(run_folder: Path) -> dict:
    """``scancel`` the run's job: SLURM has it CANCELLED, and the run writes its summary.json before
    KillWait (30 s) ends in SIGKILL. SLURM shows CANCELLED as soon as it sends SIGTERM, so the summary
    is waited for, up to KillWait and a little."""
    job = _wait(lambda: _slurm_ids(run_folder.parent).get(0), "the job id")
    _run("scancel", job)
    assert _wait_state(job, {"CANCELLED"}) == "CANCELLED"
    summary = run_folder / "summary.json"
    present = sorted(p.name for p in run_folder.iterdir())
    _wait(summary.is_file, f"summary.json in {run_folder} (present after CANCELLED: {present})", 40)
    return _summary(run_folder)


def test_scancel_mid_training_leaves_an_interrupted_summary(workdir: Path, launcher: list[str], cleanup: list) -> None:
    process = _launch(workdir, *launcher, *RESUMABLE, "task_name=slurm_scancel", log="slurm_scancel.out")
    cleanup.append(process)
    run_folder = _wait_multirun(workdir, "slurm_scancel", process) / "0"
    _wait(lambda: (run_folder / "checkpoints" / "last.ckpt").exists(), "the first epoch", process=process)
    summary = _cancel(run_folder)
    assert summary["status"] == "interrupted", summary.get("error")
    # the launcher does not wait forever for a job that will never deliver a result
    assert process.wait(timeout=120) != 0


def test_scancel_before_training_leaves_an_interrupted_summary(
    workdir: Path, launcher: list[str], cleanup: list
) -> None:
    """Cancelled while it generates its data (outside Lightning, whose SIGTERM handler covers only
    fit/test; submitit ignores SIGTERM): the run stops at once and still writes its summary.json,
    instead of being SIGKILLed KillWait later without one."""
    fresh = workdir / "fresh_data"
    process = _launch(
        workdir,
        *launcher,
        *TINY,
        "data.identities=10",
        f"data.root={fresh}",
        "trainer.max_epochs=1",
        "task_name=slurm_scancel_early",
        log="slurm_scancel_early.out",
    )
    cleanup.append(process)
    run_folder = _wait_multirun(workdir, "slurm_scancel_early", process) / "0"
    _wait(lambda: len(list(fresh.rglob("*.JPG"))) >= 10, "the data generation", process=process)
    summary = _cancel(run_folder)
    assert summary["status"] == "interrupted", summary.get("error")
    manifest = json.loads((fresh / "KDEF_and_AKDEF" / "SYNTHETIC.json").read_text())
    assert manifest["complete"] is False  # stopped before the end: the tree is marked unfinished


def _daemon_pids(state: Path) -> dict[str, int]:
    files = {"munged": state / "munge" / "munged.pid", "mariadbd": state / "run" / "mariadb" / "mariadbd.pid"}
    files.update({name: state / "run" / f"{name}.pid" for name in ("slurmdbd", "slurmctld", "slurmd")})
    return {name: int(path.read_text().strip()) for name, path in files.items() if path.exists()}


def _alive(pid: int, name: str) -> bool:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return comm == name and state not in ("Z", "X")


def _processes_of(conf: Path) -> list[int]:
    """Live processes whose environment names this cluster's config (the daemons and job steps)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if f"SLURM_CONF={conf}".encode() in environ and state not in ("Z", "X") and int(proc.name) != os.getpid():
            found.append(int(proc.name))
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="starting a cluster needs root")
def test_start_script_is_idempotent_and_stop_leaves_nothing_running() -> None:
    """A second cluster next to the one the other tests use (own state folder and ports): start,
    start again (finds everything running), stop (nothing left), start again (reuses the state)."""
    # not under pytest's private (0700) tmp: the munge and mysql users must reach the state folder
    state = Path(tempfile.mkdtemp(prefix="lanmsff-slurm-test-", dir="/var/tmp"))
    state.chmod(0o755)
    env = {
        **os.environ,
        "LANMSFF_SLURM_CLUSTER": "lanmsfftest",
        "LANMSFF_SLURM_CTLD_PORT": "6827",
        "LANMSFF_SLURM_SLURMD_PORT": "6828",
        "LANMSFF_SLURM_DBD_PORT": "6829",
        "LANMSFF_SLURM_DB_PORT": "3317",
    }
    conf = state / "etc" / "slurm.conf"
    slurm_env = {**os.environ, "SLURM_CONF": str(conf)}

    def script(name: str, *args: str) -> subprocess.CompletedProcess:
        done = _run("bash", str(SCRIPTS / name), "--state-dir", str(state), *args, timeout=300, env=env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    try:
        first = script("start.sh")
        assert "[slurm] ready" in first.stdout and "mariadb: initialising" in first.stdout
        pids = _daemon_pids(state)
        assert sorted(pids) == ["mariadbd", "munged", "slurmctld", "slurmd", "slurmdbd"]
        assert all(_alive(pid, name) for name, pid in pids.items()), pids

        again = script("start.sh")  # finds all five running and starts none
        assert again.stdout.count(": running (pid ") == 5, again.stdout
        assert all(f"(pid {pid})" in again.stdout for pid in pids.values()), again.stdout
        assert _daemon_pids(state) == pids

        job = _run("sbatch", "--parsable", "--wait", "-o", "/dev/null", "--wrap", "true", timeout=120, env=slurm_env)
        assert job.returncode == 0, job.stderr
        records = _run("sacct", "-n", "-P", "-X", "-j", job.stdout.strip(), "-o", "State", env=slurm_env)
        assert records.stdout.split() == ["COMPLETED"], records.stdout + records.stderr

        stopped = script("stop.sh")
        assert "[slurm] stopped" in stopped.stdout
        assert not any(_alive(pid, name) for name, pid in pids.items()), stopped.stdout
        assert _processes_of(conf) == [] and _daemon_pids(state) == {}

        restarted = script("start.sh")
        assert "[slurm] ready" in restarted.stdout and "initialising" not in restarted.stdout
        assert "configs: unchanged" in restarted.stdout, restarted.stdout
    finally:
        _run("bash", str(SCRIPTS / "stop.sh"), "--state-dir", str(state), "--purge", timeout=300, env=env)
    assert _processes_of(conf) == [] and not state.exists()
