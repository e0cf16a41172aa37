"""Output that scripts can read: with --json (or where stdout is data) standard output holds only the data.

Progress bars, logs and warnings go to standard error; there, when it is not a terminal, a progress bar
prints one final line instead of flooding the log; --quiet turns bars off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lanmsff.records import SUMMARY_FILE


def _command(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("LANMSFF_QUIET", None)  # the suite is quiet by default; these tests look at the bars
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_data_check_json_is_pure_and_the_bar_is_one_stderr_line(tiny_tree: Path, tmp_path: Path) -> None:
    result = _command("-m", "lanmsff.data.cli", "check", str(tiny_tree), "--json", "--face-crop", "box", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # nothing but the JSON on stdout
    assert report["images"] == 280
    progress = [line for line in result.stderr.splitlines() if "Preprocessing 280 faces" in line]
    assert len(progress) == 1  # not a terminal: the final state only


def test_quiet_turns_the_bars_off(tiny_tree: Path, tmp_path: Path) -> None:
    args = ("-m", "lanmsff.data.cli", "--quiet", "check", str(tiny_tree), "--json", "--face-crop", "box")
    result = _command(*args, cwd=tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout)["images"] == 280
    assert "Preprocessing" not in result.stderr


def test_data_splits_json_is_pure(tiny_tree: Path, tmp_path: Path) -> None:
    args = ("-m", "lanmsff.data.cli", "splits", str(tiny_tree), "--protocol", "paper", "--num-folds", "2", "--json")
    result = _command(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    parts = json.loads(result.stdout)
    assert sum(len(files) for files in (parts["train"], parts["test"])) == 280
    assert "optimistic" in result.stderr  # the paper-protocol warning is on stderr, not in the JSON


def test_compare_warnings_go_to_stderr(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    summary = {"status": "ok", "study": "s", "variant": "v", "fold": 0, "metrics": {"test/acc": 0.5}}
    (run / SUMMARY_FILE).write_text(json.dumps(summary))
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / SUMMARY_FILE).write_text("{not json")
    result = _command("-m", "lanmsff.analysis", str(tmp_path / "runs"), "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "skipping" in result.stderr and "skipping" not in result.stdout
    assert "report: " in result.stdout
