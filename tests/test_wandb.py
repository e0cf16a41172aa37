"""W&B on clusters: an unreachable server, one W&B run per run folder, the group of a sweep, and the run
record that ``compare --wandb`` reads back from what the logger sent (the same verdicts as the run folders)."""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from omegaconf import open_dict
from pytorch_lightning.loggers import WandbLogger

from lanmsff.analysis.comparisons import study_statistics
from lanmsff.analysis.loading import load_runs, load_wandb_runs
from lanmsff.records import read_summary
from lanmsff.tasks.common import log_hyperparams
from lanmsff.training.recorder import RunRecorder, close_loggers
from lanmsff.utils.config import instantiate_loggers
from lanmsff.utils.wandb_records import record_from_wandb, record_to_wandb
from lanmsff.utils.wandb_runs import first_hop, group_matches, unreachable_reason

from .conftest import compose_config

FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"


def closed_port() -> int:
    """A local TCP port that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wandb_loggers(tmp_path: Path, *overrides: str) -> list[Any]:
    cfg = compose_config("train", ["logger=wandb", *overrides], tmp_path)
    return instantiate_loggers(cfg.logger, tags=["dev"], name="lanmsff-fold0")


def test_an_unreachable_server_falls_back_to_offline_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An API key, but nothing answers at WANDB_BASE_URL: offline at once (wandb.init would wait ~90 s)
    with one warning that says how to upload later; the run then logs offline."""
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_BASE_URL", url)
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    with caplog.at_level(logging.INFO, logger="lanmsff"):
        [logger] = wandb_loggers(tmp_path)
    [warning] = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("lanmsff")
    ]
    assert warning.startswith(f"W&B: cannot reach {url} (ConnectionRefusedError"), warning
    assert f"logging offline to {tmp_path / 'run' / 'wandb'}; upload later: wandb sync " in warning
    assert logger._offline is True
    logger.log_metrics({"test/acc": 0.5})
    close_loggers([logger])
    [offline] = (tmp_path / "run" / "wandb").glob("offline-run-*")
    assert offline.name.endswith(logger._wandb_init["id"])


def test_behind_a_proxy_the_check_connects_to_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a node that reaches W&B only through a proxy, the quick check tries the proxy, not the server."""
    proxy = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("https_proxy", proxy)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert first_hop("https://api.wandb.ai") == proxy
    assert unreachable_reason("https://api.wandb.ai").startswith("ConnectionRefusedError")  # the proxy refused
    monkeypatch.setenv("no_proxy", "api.wandb.ai")
    assert first_hop("https://api.wandb.ai") == "https://api.wandb.ai"


def test_a_restarted_run_folder_resumes_its_wandb_run(tmp_path: Path) -> None:
    """The W&B run id is kept in the run folder: a restarted (requeued) job in it passes the same id
    to wandb.init with resume="allow"; another run folder gets another id."""
    [first] = wandb_loggers(tmp_path)
    kept = (tmp_path / "run" / "wandb" / "run_id").read_text().strip()
    [again] = wandb_loggers(tmp_path)
    [other] = wandb_loggers(tmp_path / "other")
    assert first._wandb_init["id"] == again._wandb_init["id"] == kept and len(kept) == 8
    assert first._wandb_init["resume"] == again._wandb_init["resume"] == "allow"
    assert other._wandb_init["id"] != kept


def _wandb_service_pids() -> list[int]:
    """This process's children that run W&B's service (``wandb-core``)."""
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    return [int(pid) for pid in children if b"wandb-core" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_a_wandb_service_stopped_by_the_jobs_sigterm_costs_one_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    """SLURM's SIGTERM reaches every process of the job, W&B's service too: the run's record and
    W&B's finish then fail; the run says so in one warning line each and W&B's exit hook stays quiet."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    recorder = RunRecorder(tmp_path, compose_config("train", [], tmp_path), job_type="train")
    recorder.loggers = wandb_loggers(tmp_path)
    run_id = recorder.loggers[0].experiment.id
    [service] = _wandb_service_pids()
    os.kill(service, signal.SIGTERM)
    os.waitpid(service, 0)
    with caplog.at_level(logging.WARNING, logger="lanmsff"):
        recorder.log_record_to_wandb()
        close_loggers(recorder.loggers, failed=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("lanmsff")]
    assert len(warnings) == 2 and warnings[0].startswith("W&B: run record not logged"), warnings
    assert warnings[1].startswith(f"W&B: run {run_id} not finished, its service process stopped with the job")
    assert all(r.exc_info is None for r in caplog.records if r.name.startswith("lanmsff"))
    import wandb

    assert wandb.run is None
    assert "Traceback" not in "".join(capfd.readouterr())


def test_the_group_carries_the_study_and_the_sweep(tmp_path: Path) -> None:
    """group = <task_name>/<sweep id>: the run folder's time stamp (the multirun's for a sweep), or
    study_id when set; group_by_sweep=false groups by the study alone. compare's --group rule."""
    cfg = compose_config("train", ["logger=wandb", "task_name=kdef_ablation"], tmp_path)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "logs" / "kdef_ablation" / "runs" / "2026-12-04_03-41-42_186007")
    assert instantiate_loggers(cfg.logger)[0]._wandb_init["group"] == "kdef_ablation/2026-12-04_03-41-42_186007"
    with open_dict(cfg):
        cfg.logger.wandb.study_id = "final"
    assert instantiate_loggers(cfg.logger)[0]._wandb_init["group"] == "kdef_ablation/final"
    with open_dict(cfg):
        cfg.logger.wandb.group_by_sweep = False
    assert instantiate_loggers(cfg.logger)[0]._wandb_init["group"] == "kdef_ablation"
    assert group_matches("kdef_ablation/final", "kdef_ablation") and group_matches("kdef_ablation", "kdef_ablation")
    assert group_matches("kdef_ablation/final", "kdef_ablation/final")
    assert not group_matches("kdef_ablation/smoke", "kdef_ablation/final")
    assert not group_matches("kdef_ablation_v2/final", "kdef_ablation") and not group_matches(None, "kdef_ablation")


# ------------------------------------------------------------------------------------- the round trip
ACC = {"lanmsff": [0.80, 0.86, 0.90, 0.84], "lanmsff_attn_none": [0.70, 0.78, 0.83, 0.74]}


@pytest.fixture
def study(trained_checkpoint: Path, tmp_path: Path) -> Path:
    """A study of 2 variants x 4 folds made from the record a real training run wrote: its config, data
    block, provenance and confusion matrix, with the variant, fold and accuracy of each run."""
    real = read_summary(trained_checkpoint.parents[1] / "summary.json")
    assert real is not None and real["status"] == "ok" and real["data"]["test"] > 0
    sweep = tmp_path / "logs" / "wb_study" / "multiruns" / "2026-12-04_04-00-00_000000"
    job = 0
    for variant, accs in ACC.items():
        for fold, acc in enumerate(accs):
            record = copy.deepcopy(real)
            record.update(study="wb_study", variant=variant, fold=fold, output_dir=str(sweep / str(job)))
            record["config"].update(task_name="wb_study", variant=variant)
            record["config"]["data"]["fold"] = fold
            record["metrics"].update({"test/acc": acc, "test/f1_macro": acc - 0.03, "test/uar": acc - 0.01})
            (sweep / str(job)).mkdir(parents=True)
            (sweep / str(job) / "summary.json").write_text(json.dumps(record))
            job += 1
    return sweep


def sent_to_wandb(record: dict[str, Any], folder: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """What the W&B logger sends for ``record`` (train.py's config, then the run record at the end),
    captured in-process from an offline run, as W&B's API returns a run (JSON)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    recorder = RunRecorder(folder, compose_config("train", [], folder), job_type="train")
    recorder.summary = record
    recorder.loggers = [WandbLogger(project="lanmsff", save_dir=str(folder), offline=True, group="wb_study/x")]
    log_hyperparams(recorder.loggers, recorder)
    recorder.log_record_to_wandb()
    experiment = recorder.loggers[0].experiment
    config, summary = (
        json.loads(json.dumps(dict(experiment.config))),
        json.loads(json.dumps(experiment.summary._as_dict())),
    )
    close_loggers(recorder.loggers)
    return SimpleNamespace(config=config, summary=summary, state="finished", group="wb_study/x", name=folder.name)


@pytest.mark.slow
def test_compare_from_what_wandb_received_equals_compare_from_the_run_folders(
    study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [read_summary(p) for p in sorted(study.rglob("summary.json"))]
    runs = [sent_to_wandb(r, tmp_path / "wandb" / str(i), monkeypatch) for i, r in enumerate(records)]
    for record, run in zip(records, runs, strict=True):  # the record comes back whole
        back = record_from_wandb(run.config, run.summary)
        assert {k: v for k, v in back.items() if k != "config"} == {k: v for k, v in record.items() if k != "config"}
        assert back["config"].items() >= record["config"].items()  # and what log_hyperparams added beside it
        assert record_from_wandb(*record_to_wandb(record)) == record

    class FakeApi:
        def runs(self, path: str, filters: dict) -> list[SimpleNamespace]:
            return runs

    from_folders = load_runs([study])
    from_wandb = load_wandb_runs("team/lanmsff", "wb_study", api=FakeApi())
    columns = ["variant", "fold", "status", "n_train", "n_test", "data_fingerprint", "test_hash", "protocol_version"]
    assert from_wandb[columns].equals(from_folders[columns]) and from_folders["n_test"].notna().all()
    expected, got = study_statistics(from_folders), study_statistics(from_wandb)
    assert expected.kind == "folds" and len(expected.verdicts) == 1
    assert "no corrected test" not in expected.verdicts[0]
    assert got.verdicts == expected.verdicts
    assert [(t.title, t.headers, t.rows) for t in got.tables] == [(t.title, t.headers, t.rows) for t in expected.tables]
