"""The run record: one schema for what RunRecorder writes and what the comparison reads."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from lanmsff.records import SCHEMA_VERSION, SUMMARY_FILE, SUMMARY_KEYS, new_summary, read_summary
from lanmsff.training.recorder import RunRecorder


def test_recorder_writes_every_schema_key_and_only_those(tmp_path: Path) -> None:
    cfg = {"task_name": "study", "variant": "v", "seed": 3, "data": {"fold": 1}}
    with RunRecorder(tmp_path, cfg, job_type="train") as run:
        run.summary["metrics"]["test/acc"] = 0.5
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary["schema_version"] == SCHEMA_VERSION and summary["status"] == "ok"
    assert set(summary) <= set(SUMMARY_KEYS)
    assert (summary["study"], summary["variant"], summary["fold"], summary["seed"]) == ("study", "v", 1, 3)
    assert read_summary(tmp_path / SUMMARY_FILE) == summary


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(KeyError, match=r"not summary\.json keys: acc"):
        new_summary(acc=1.0)


def test_a_newer_schema_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / SUMMARY_FILE
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1, "status": "ok"}))
    with caplog.at_level(logging.WARNING):
        assert read_summary(path) is None
    assert f"schema_version {SCHEMA_VERSION + 1} is newer" in caplog.text
    path.write_text(json.dumps({"status": "ok"}))  # files from before schema_version: version 1
    assert read_summary(path) == {"status": "ok"}
