"""A quiet console: the known third-party warnings and tips stay off the console and in the run's log file."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from lanmsff.utils.console import KNOWN_NOISE, ConsoleFormatter, ConsoleNoiseFilter

from .conftest import run_script

# what a user saw on the console of `make train` before, and must not see again
NOISE_ON_STDERR = re.compile(
    r"litlogger|litmodels|anonymous setting|_pytree|LeafSpec|TPU available|`srun` command|Traceback"
)


def _record(name: str, message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_the_filter_holds_back_only_the_known_noise() -> None:
    noise_filter = ConsoleNoiseFilter()
    tip = "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger](https://x)"
    pytree = (
        "/venv/site-packages/pytorch_lightning/utilities/_pytree.py:21: `isinstance(treespec, LeafSpec)` is "
        "deprecated, use `isinstance(treespec, TreeSpec) and treespec.is_leaf()` instead."
    )
    assert not noise_filter.filter(_record("pytorch_lightning.utilities.rank_zero", tip))
    assert not noise_filter.filter(_record("py.warnings", pytree, logging.WARNING))
    # the same words from elsewhere, and everything else, pass
    assert noise_filter.filter(_record("lanmsff.tasks.train", tip))
    assert noise_filter.filter(_record("py.warnings", pytree.replace("pytorch_lightning/utilities", "mine")))
    assert noise_filter.filter(_record("pytorch_lightning.utilities.rank_zero", "GPU available: False, used: False"))
    assert all(noise.why for noise in KNOWN_NOISE)  # each entry says why it is noise


def test_console_lines_are_short_and_warnings_say_so() -> None:
    formatter = ConsoleFormatter("%(message)s")
    assert formatter.format(_record("x", "Seed set to 42")) == "Seed set to 42"
    assert formatter.format(_record("x", "disk almost full", logging.WARNING)) == "warning: disk almost full"


@pytest.mark.slow
def test_a_one_epoch_demo_has_no_third_party_noise_on_stderr(tmp_path: Path) -> None:
    args = ("experiment=demo", "data.identities=4", "data.num_folds=2", "trainer.max_epochs=1")
    result = run_script("train.py", *args, cwd=tmp_path, env={"PYTHONWARNINGS": "default", "WANDB_MODE": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert not NOISE_ON_STDERR.search(result.stderr), result.stderr
    [log_file] = (tmp_path / "logs" / "demo" / "runs").glob("*/demo.log")
    assert "litlogger" in log_file.read_text(encoding="utf-8")  # held back from the console, kept in the log
    assert "Next:" in result.stdout and "predict.py ckpt_path=" in result.stdout  # the demo says what to do next


def test_next_steps_name_the_commands_the_user_runs() -> None:
    """A checkout's train.py prints the demo's lines as written; an installed lanmsff-train, its console scripts."""
    from io import StringIO

    from rich.console import Console

    from lanmsff.tasks.train import user_commands
    from lanmsff.training.recorder import print_next_steps

    lines = [
        "Predict:  .venv/bin/python predict.py ckpt_path={best_ckpt}",
        "Compare:  .venv/bin/python -m lanmsff.analysis x",
    ]
    printed = {}
    for argv0 in ("/home/me/lanmsff/train.py", "/home/me/venv/bin/lanmsff-train"):
        out = StringIO()
        print_next_steps(lines, {"best_ckpt": "b.ckpt"}, Console(file=out, width=200), commands=user_commands(argv0))
        printed[argv0.rsplit("/", 1)[1]] = out.getvalue()
    assert "Predict:  .venv/bin/python predict.py ckpt_path=b.ckpt" in printed["train.py"]
    assert "Predict:  lanmsff-predict ckpt_path=b.ckpt" in printed["lanmsff-train"]
    assert "Compare:  lanmsff-compare x" in printed["lanmsff-train"]
