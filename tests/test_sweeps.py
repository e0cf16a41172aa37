"""Studies at scale: multiruns that survive failures, W&B offline runs, Optuna, submitit, DDP, NaN guard."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml

from lanmsff.training import FERModule
from lanmsff.training.callbacks import NaNGuard, NonFiniteLossError

from .conftest import TINY_TRAIN, run_script

TINY = [*TINY_TRAIN, "data.identities=4", "data.num_folds=10", "logger=default"]  # the study logs to W&B too
FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"


def summaries(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("summary.json"))]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 variants x 3 folds, of which fold 5 cannot exist (num_folds=2): 4 jobs run, 2 fail."""
    workdir = tmp_path_factory.mktemp("study")
    result = run_script(
        "train.py",
        "-m",
        *TINY,
        "task_name=mini_study",
        "data.num_folds=2",
        "data.fold=0,1,5",
        "model=lanmsff,lanmsff_attn_none",
        cwd=workdir,
        env={"WANDB_API_KEY": FAKE_KEY, "WANDB_MODE": "offline"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [multirun] = (workdir / "logs" / "mini_study" / "multiruns").iterdir()
    return multirun


@pytest.mark.slow
def test_failed_jobs_are_recorded_and_the_sweep_goes_on(study: Path) -> None:
    runs = summaries(study)
    assert len(runs) == 6
    ok = [r for r in runs if r["status"] == "ok"]
    failed = [r for r in runs if r["status"] == "failed"]
    assert len(ok) == 4 and len(failed) == 2
    assert all("data.fold=5 must satisfy 0 <= fold < data.num_folds=2" in r["error"] for r in failed)
    assert sorted((r["variant"], r["fold"]) for r in ok) == [
        ("lanmsff", 0),
        ("lanmsff", 1),
        ("lanmsff_attn_none", 0),
        ("lanmsff_attn_none", 1),
    ]
    assert all(r["study"] == "mini_study" and 0 <= r["metrics"]["test/acc"] <= 1 for r in ok)


@pytest.mark.slow
def test_one_offline_wandb_run_per_job_with_group_and_tags(study: Path) -> None:
    for job in sorted(p for p in study.iterdir() if (p / "summary.json").exists()):
        summary = json.loads((job / "summary.json").read_text())
        if summary["status"] != "ok":
            continue
        runs = list((job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, job
        [record] = runs[0].glob("run-*.wandb")
        data = record.read_bytes()
        name = f"{summary['variant']}-fold{summary['fold']}"  # the run name W&B groups and lists
        for expected in (b"mini_study", b"train", name.encode(), f"fold{summary['fold']}".encode()):
            assert expected in data, (job, expected)
        assert (runs[0] / "files" / "media" / "images").is_dir()  # the confusion matrix image


@pytest.mark.slow
def test_no_secret_in_logs_summaries_or_configs(study: Path) -> None:
    for path in study.rglob("*"):
        if path.is_file() and path.suffix not in (".ckpt", ".png"):
            assert FAKE_KEY.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_ddp_sim_runs_two_processes_and_writes_one_summary(tmp_path: Path) -> None:
    result = run_script("train.py", *TINY, "data.num_folds=2", "trainer=ddp_sim", "logger=csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [summary] = summaries(tmp_path / "logs")
    assert summary["status"] == "ok" and summary["world_size"] == 2
    assert sum(map(sum, summary["confusion_matrix"])) == summary["data"]["test"]  # every test image once
    assert "GLOBAL_RANK: 1" in result.stdout + result.stderr
    # the one-process tester keeps the attention callback: the mean attention per view counts every test image
    [maps] = (tmp_path / "logs").rglob("attention/per_view.npz")
    assert int(np.load(maps)["counts"].sum()) == summary["data"]["test"]


@pytest.mark.slow
def test_submitit_local_launcher(tmp_path: Path) -> None:
    result = run_script(
        "train.py", "-m", "hydra/launcher=local", *TINY, "data.num_folds=2", "data.fold=0,1", "logger=csv", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = summaries(tmp_path / "logs")
    assert sorted(r["fold"] for r in runs) == [0, 1] and {r["status"] for r in runs} == {"ok"}
    assert list((tmp_path / "logs").rglob(".submitit"))  # jobs went through submitit


@pytest.mark.slow
def test_optuna_search_maximises_validation_accuracy(tmp_path: Path) -> None:
    result = run_script(
        "train.py",
        "hparams_search=lanmsff_optuna",
        "hydra.sweeper.n_trials=2",
        *TINY,
        "data.num_folds=2",
        "logger=csv",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [results] = (tmp_path / "logs").rglob("optimization_results.yaml")
    best = yaml.safe_load(results.read_text())
    assert 0.0 <= best["best_value"] <= 1.0 and "optim.optimizer.lr" in best["best_params"]
    runs = summaries(tmp_path / "logs")
    assert len(runs) == 2
    assert max(r["metrics"]["val/acc_best"] for r in runs) == pytest.approx(best["best_value"])


class _ExplodingModule(FERModule):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * math.nan if self.global_step == 2 else loss


def test_nan_guard_stops_the_run_naming_the_step() -> None:
    module = _ExplodingModule(
        {"_target_": "lanmsff.models.LANMSFF", "widths": [12, 12, 12, 12]},
        class_names=list("abcdefg"),
        optimizer={"_target_": "torch.optim.Adam", "lr": 1e-3},
    )
    data = torch.utils.data.TensorDataset(
        torch.rand(64, 1, 64, 64), torch.randint(0, 7, (64,)), torch.zeros(64, dtype=torch.long)
    )
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    trainer = pl.Trainer(
        max_epochs=1, callbacks=[NaNGuard()], logger=False, enable_progress_bar=False, enable_checkpointing=False
    )
    with pytest.raises(NonFiniteLossError, match="training loss is nan at global step 3"):
        trainer.fit(module, train_dataloaders=loader)
