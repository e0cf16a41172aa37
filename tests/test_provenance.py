"""Every number traceable: what each run records about its code, software, machine, data and randomness,
and a comparison that refuses to pool what should not be pooled."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from lanmsff.analysis.cli import main as compare_main
from lanmsff.analysis.loading import load_runs
from lanmsff.runtime import hardware
from lanmsff.runtime.provenance import code_revision, provenance

from .conftest import TINY_TRAIN, run_script

SECRET = "0123456789abcdef0123456789abcdef01234567"


def _git(folder: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    return subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, text=True, env=env).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    _git(folder, "init", "-q")
    (folder / "notes.txt").write_text("v1\n")
    _git(folder, "add", "notes.txt")
    _git(folder, "commit", "-q", "-m", "first")
    return folder


def test_commit_and_dirty_flag_of_a_git_checkout(repo: Path) -> None:
    commit = _git(repo, "rev-parse", "HEAD").strip()
    clean = code_revision(repo)
    assert clean == {"git": True, "root": str(repo), "commit": commit, "dirty": False}
    (repo / "notes.txt").write_text("v2\n")
    dirty = code_revision(repo)
    assert dirty["dirty"] and dirty["commit"] == commit and len(dirty["diff_sha256"]) == 64
    (repo / "notes.txt").write_text("v3\n")
    assert code_revision(repo)["diff_sha256"] != dirty["diff_sha256"]  # two dirty trees told apart


def test_no_git_outside_a_checkout(tmp_path: Path) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    revision = code_revision(outside)
    assert revision["git"] is False and "not inside a git checkout" in revision["reason"]


def test_secrets_on_the_command_line_are_redacted_and_the_environment_is_not_dumped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    # a kernel limit in the environment is recorded (torch read it at import: this process's kernels are unchanged)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    record = provenance(
        overrides=[f"logger.wandb.api_key={SECRET}", "data.fold=3"], seed=1, deterministic=True, precision="32-true"
    )
    text = json.dumps(record)
    assert SECRET not in text and "WANDB_API_KEY" not in text
    assert record["command"]["overrides"] == ["logger.wandb.api_key=<redacted>", "data.fold=3"]
    assert {"torch", "pytorch-lightning", "hydra-core", "torchmetrics", "timm", "albumentations", "numpy"} <= set(
        record["environment"]
    )
    assert record["randomness"] == {"seed": 1, "deterministic": True}
    assert record["machine"]["threads"] >= 1 and "native_bf16" in record["machine"]
    assert record["machine"]["isa_limits"] == {"ATEN_CPU_CAPABILITY": "avx2"}
    assert record["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["machine"]["cpu_id"] == hardware.cpu_id()  # tells apart kinds that share a model name


@pytest.mark.slow
def test_a_run_records_the_checkout_it_runs_in(repo: Path) -> None:
    (repo / "notes.txt").write_text("changed\n")  # a dirty tree
    result = run_script("train.py", *TINY_TRAIN, "trainer.deterministic=true", cwd=repo)
    assert result.returncode == 0, result.stderr[-3000:]
    [path] = (repo / "logs" / "train" / "runs").glob("*/summary.json")
    summary = json.loads(path.read_text())
    where = summary["provenance"]["code"]["working_directory"]
    assert where["commit"] == _git(repo, "rev-parse", "HEAD").strip() and where["dirty"] is True
    assert summary["provenance"]["randomness"] == {"seed": 42, "deterministic": True}
    assert "data.identities=4" in summary["provenance"]["command"]["overrides"]
    assert summary["provenance"]["machine"]["precision"] in ("32-true", "bf16-mixed")
    assert summary["provenance"]["machine"]["allocator_tuned"] is True  # train.py tunes glibc's allocator
    assert len(summary["data"]["fingerprint"]) == 64 and len(summary["data"]["test_hash"]) == 64
    [ckpt] = path.parent.glob("checkpoints/epoch_*.ckpt")
    import torch

    stored = torch.load(ckpt, map_location="cpu", weights_only=True)["lanmsff"]["provenance"]
    assert stored["code"] == summary["provenance"]["code"]


def _summary(folder: Path, variant: str, fold: int, acc: float, fingerprint: str, revision: str = "abc") -> None:
    run = folder / f"{variant}_{fold}_{fingerprint}"
    run.mkdir(parents=True)
    summary = {
        "schema_version": 3,
        "status": "ok",
        "job_type": "train",
        "study": "s",
        "variant": variant,
        "fold": fold,
        "seed": 0,
        "metrics": {"test/acc": acc},
        "data": {"train": 100, "test": 20, "fingerprint": fingerprint, "test_hash": f"t{fold}"},
        "provenance": {"code": {"package": {"git": True, "commit": revision, "dirty": False}}},
    }
    (run / "summary.json").write_text(json.dumps(summary))


def test_the_report_refuses_to_pool_two_copies_of_the_data(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    logs = tmp_path / "logs"
    _summary(logs, "lanmsff", 0, 0.8, "copyA")
    _summary(logs, "lanmsff", 1, 0.9, "copyB")
    assert compare_main([str(logs), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert "s / lanmsff: 2 data fingerprints" in err and "--allow-mixed" in err and "Traceback" not in err
    assert not (tmp_path / "report" / "report.md").exists()
    assert compare_main([str(logs), "--out", str(tmp_path / "report"), "--allow-mixed"]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert text.split("\n")[2].startswith("Mixed runs pooled (--allow-mixed): s / lanmsff: 2 data fingerprints")
    assert "where the runs came from" in text and "copyA" in text and "copyB" in text


def test_runs_scored_on_other_test_images_are_not_paired(tmp_path: Path) -> None:
    from lanmsff.analysis.comparisons import study_statistics

    logs = tmp_path / "logs"
    for fold in range(3):
        _summary(logs, "lanmsff", fold, 0.8 + fold / 100, "same")
        _summary(logs, "other", fold, 0.7 + fold / 100, "same")
    moved = logs / "other_2_same" / "summary.json"
    summary = json.loads(moved.read_text())
    summary["data"]["test_hash"] = "elsewhere"
    moved.write_text(json.dumps(summary))
    stats = study_statistics(load_runs([logs]))
    reasons = {(x.variant, x.fold): x.reason for x in stats.left_out}
    assert "other test images (test_hash differs)" in reasons[("other", 2)]
    assert "(corrected t-test, 2 folds" in stats.verdicts[0]


# ---------------------------------------------------------------------------------------------- the data
def _kdef(root: Path, **kwargs: object) -> dict:
    from lanmsff.data.datamodule import KDEFDataModule

    datamodule = KDEFDataModule(root, face_crop="box", protocol="subject", num_folds=2, **kwargs)
    datamodule.setup()
    return datamodule.describe()


def test_the_data_fingerprint_follows_the_files_not_their_order(tiny_tree: Path, tmp_path: Path) -> None:
    import random
    import shutil

    from lanmsff.data.cache import cache_key
    from lanmsff.data.kdef import index_kdef

    copy = tmp_path / "copy"
    shutil.copytree(tiny_tree, copy, copy_function=shutil.copy2)  # same names, sizes and times
    index = index_kdef(copy)
    params = {"image_size": 64}
    key = cache_key(index.root, index.records, params)
    shuffled = list(index.records)
    random.Random(0).shuffle(shuffled)
    assert cache_key(index.root, shuffled, params) == key  # listing order does not matter
    assert _kdef(copy)["fingerprint"] == _kdef(tiny_tree)["fingerprint"]
    first = index.root / index.records[0].path
    first.write_bytes(first.read_bytes() + b"\0")  # one image changes
    assert cache_key(index.root, index.records, params) != key
    assert _kdef(copy)["fingerprint"] != _kdef(tiny_tree)["fingerprint"]


def test_the_test_assignment_hash_names_the_test_people(tiny_tree: Path) -> None:
    fold0 = _kdef(tiny_tree, fold=0, seed=1)["test_hash"]
    assert _kdef(tiny_tree, fold=0, seed=1)["test_hash"] == fold0  # same fold and seed: same test people
    assert _kdef(tiny_tree, fold=1, seed=1)["test_hash"] != fold0
