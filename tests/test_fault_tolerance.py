"""Faults: killed runs resume to the same result, bad settings stop before any work, writes are atomic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from lanmsff import entrypoints
from lanmsff.entrypoints import run_cli, unknown_group_options
from lanmsff.training.checkpoint_io import AtomicCheckpointIO

from .conftest import ROOT

RESUMABLE = [
    "data=kdef_synthetic",
    "data.identities=4",
    "data.num_folds=4",
    "data.batch_size=4",  # epochs of a few seconds: time to kill the run mid-epoch
    "model.net.widths=[30,30,30,30]",
    "trainer.max_epochs=4",
    "trainer.deterministic=true",
    "logger=csv",
    "seed=3",
]


def _train(run_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "LANMSFF_ROOT": str(run_dir.parent), "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *RESUMABLE, f"hydra.run.dir={run_dir}", *extra],
        cwd=run_dir.parent,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _checkpoint_stamp(checkpoint: Path) -> tuple[int, int] | None:
    try:
        stat = checkpoint.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _kill_after_next_epoch(process: subprocess.Popen, run_dir: Path, sig: int) -> int:
    """Send ``sig`` once the run has written a new ``last.ckpt`` (end of an epoch), i.e. mid-run.

    ``last.ckpt`` is rewritten (atomically: new inode) at every epoch end whatever the metrics,
    unlike the best-only ``epoch_NNN.ckpt`` files, whose existence depends on the float results.
    """
    last = run_dir / "checkpoints" / "last.ckpt"
    before = _checkpoint_stamp(last)
    deadline = time.monotonic() + 600
    while _checkpoint_stamp(last) in (before, None):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.2)  # into the next epoch
    process.send_signal(sig)
    return process.wait(timeout=300)


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow
def test_killed_runs_resume_to_the_same_result(tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    assert _train(straight).wait(timeout=900) == 0
    reference = _metrics(straight)
    assert reference["status"] == "ok" and reference["resumed_from"] is None

    run = tmp_path / "interrupted"
    code = _kill_after_next_epoch(_train(run), run, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM
    assert _metrics(run)["status"] == "interrupted"
    code = _kill_after_next_epoch(_train(run), run, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert _train(run).wait(timeout=900) == 0  # resume=auto finds checkpoints/last.ckpt

    resumed = _metrics(run)
    assert resumed["status"] == "ok" and resumed["resumed_from"].endswith("last.ckpt")
    for key in ("test/acc", "test/f1_macro", "val/acc_best", "val/loss", "train/loss"):
        assert resumed["metrics"][key] == reference["metrics"][key], key
    assert resumed["confusion_matrix"] == reference["confusion_matrix"]


def test_ckpt_path_last_without_checkpoint_is_a_user_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *RESUMABLE, "ckpt_path=last", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
        env={**os.environ, "LANMSFF_ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "ckpt_path=last: there is no" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # checked before any data was generated


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=lanmsf"], "model=lanmsf: no such model config; choices: efficientnet_b0,"),
        (["data=kdef2"], "data=kdef2: no such data config; choices: "),  # the list grows with the data sets
        (["data.fold=10"], "data.fold=10 must satisfy 0 <= fold < data.num_folds=10"),
        (["data.angles=[S,XX]"], "data.angles='XX' is not valid; allowed values: 'FL', 'HL', 'S', 'HR', 'FR'"),
        (
            ["data.protocol=cross_pose", "data.train_angles=[S,HL]", "data.test_angles=[HL,FR]"],
            r"data.test_angles overlaps data.train_angles in ['HL']",
        ),
        (["data.image_size=48"], "image_size=48 is not supported"),
        (["model.net.attention=cbam"], "attention='cbam' is not valid; allowed values:"),
        (["resume=sometimes"], "resume='sometimes' is not valid; allowed values: 'auto', 'never'"),
    ],
)
def test_bad_configuration_stops_before_any_work(tmp_path: Path, overrides: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "data=kdef_synthetic", *overrides],
        cwd=tmp_path,
        env={**os.environ, "LANMSFF_ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # the synthetic data was not even generated


def test_group_option_check_accepts_sweeps_and_rejects_typos() -> None:
    assert not unknown_group_options(["-m", "model=lanmsff,resnet18", "data.fold=range(3)", "trainer=ddp_sim"])
    assert not unknown_group_options(["hydra/launcher=local", "+experiment=demo", "debug=null"])
    [problem] = unknown_group_options(["model=lanmsff,resnet1"])
    assert problem.startswith("model=resnet1: no such model config")


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)
    good = target.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, target)
    assert target.read_bytes() == good  # the previous checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind
    assert torch.load(target, weights_only=True)["state_dict"]["w"].sum() == 3


def _terminated(then: str) -> dict:
    """A task that receives SIGTERM under a handler that only notes it (as Lightning's does inside fit),
    then fails as W&B's teardown does once the same SIGTERM stopped its service, or ends normally."""
    signal.signal(signal.SIGTERM, lambda signum, frame: entrypoints._sigterm_to_exception(signum, frame))
    os.kill(os.getpid(), signal.SIGTERM)
    if then == "fails":
        raise ConnectionResetError("Connection lost")
    return {"metrics": {}}


@pytest.mark.parametrize("then", ["fails", "ends"])
def test_a_sigterm_ends_the_task_with_143_whatever_follows(then: str) -> None:
    """After a SIGTERM the process exits with 143 and no return value, so that under submitit a job that
    SLURM requeues writes no result and the launcher waits for its next attempt."""
    with pytest.raises(SystemExit) as stopped:
        run_cli(lambda cfg: _terminated(then), OmegaConf.create({}))
    assert stopped.value.code == 143
    assert signal.getsignal(signal.SIGTERM) is not entrypoints._sigterm_to_exception
