"""Every study's smoke-test command (the ``smoke test:`` line of ``lanmsff/conf/experiment/<name>.yaml``) runs.

Each command runs as written, on a tiny synthetic tree with ``trainer.fast_dev_run=true`` (one batch of
training, validation and test per job, as lightning-hydra-template's sweep tests do); every job of its
grid must finish with ``status: ok``, and the number of jobs must be that of the grid.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from pathlib import Path

import pytest
import yaml

from lanmsff.records import SUMMARY_FILE
from lanmsff.utils.config import config_group_options

from .conftest import CONF, run_script

SMOKE = re.compile(r"smoke test[^:]*:\s*(python train\.py .+)$", re.MULTILINE)
TINY_DATA = ["data.identities=4", "++trainer.fast_dev_run=true", "logger=csv"]


def smoke_command(name: str) -> list[str]:
    """The arguments of the study's smoke-test command (after ``python train.py``)."""
    text = (CONF / "experiment" / f"{name}.yaml").read_text()
    found = SMOKE.search(text)
    assert found, f"lanmsff/conf/experiment/{name}.yaml has no 'smoke test: python train.py ...' line"
    return shlex.split(found.group(1))[2:]


def _count(value: str) -> int:
    """How many values a sweep parameter takes: ``a,b,c`` -> 3, ``range(10)`` -> 10, a single value -> 1."""
    ranged = re.fullmatch(r"range\((\d+)(?:,\s*(\d+))?\)", value.strip())
    if ranged:
        start, stop = (0, int(ranged[1])) if ranged[2] is None else (int(ranged[1]), int(ranged[2]))
        return stop - start
    return len([v for v in value.split(",") if v.strip()])


def expected_jobs(name: str, args: list[str]) -> int:
    """The size of the grid: the study's sweeper parameters, with the command line's values replacing theirs."""
    config = yaml.safe_load((CONF / "experiment" / f"{name}.yaml").read_text()) or {}
    grid = {k: str(v) for k, v in (((config.get("hydra") or {}).get("sweeper") or {}).get("params") or {}).items()}
    if "-m" not in args:
        return 1
    for arg in args:
        if "=" in arg and not arg.startswith("-"):
            key, value = arg.split("=", 1)
            if key in grid or "," in value:
                grid[key] = value
    return math.prod(_count(v) for v in grid.values())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("experiments")  # one synthetic tree and cache for every study


@pytest.mark.slow
@pytest.mark.parametrize("name", config_group_options("experiment"))
def test_smoke_command_of_every_study_runs(name: str, workdir: Path) -> None:
    args = smoke_command(name)
    logs = workdir / "logs" / name
    result = run_script("train.py", *args, *TINY_DATA, f"task_name={name}", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in sorted(logs.rglob(SUMMARY_FILE))]
    assert len(summaries) == expected_jobs(name, args)
    assert [s["status"] for s in summaries] == ["ok"] * len(summaries), [s.get("error") for s in summaries]
    assert all(s["study"] == name and "test/acc" in s["metrics"] for s in summaries)


def test_the_grid_size_is_read_from_the_study_and_the_command() -> None:
    assert _count("range(10)") == 10 and _count("a,b , c") == 3 and _count("x") == 1
    args = smoke_command("kdef_cross_pose")  # cross_pose x model x fold = 2 x 1 x 2
    assert expected_jobs("kdef_cross_pose", args) == 4
    assert expected_jobs("demo", smoke_command("demo")) == 1
