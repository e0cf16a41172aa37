"""The glue between the Hydra entry points (train.py, eval.py, predict.py, export.py) and the tasks.

* :func:`check_group_options` runs before Hydra: Hydra reports an unknown config-group option
  (``model=lanmsf``) with a traceback hint and exit status 1; this check gives the list of valid
  choices and exit status 2 before anything starts.
* :func:`run_cli` runs a task: a :class:`lanmsff.errors.UserError` prints its message and exits
  with status 2 (no traceback); in a multirun a failing job is recorded in its ``summary.json``,
  returns NaN to the sweeper and the sweep continues; SIGTERM exits with 143 after the run recorded
  itself as interrupted (SIGTERM outside Lightning's loops too, and whatever else failed after it), so
  that under submitit a job that SLURM requeues leaves no result and the launcher waits for its next
  attempt; under submitit USR1 requeues the job.

This is the top of the package: it imports the tasks' common error types only, and the entry points
import it together with the task they run.
"""

from __future__ import annotations

import logging
import math
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lanmsff.errors import EXIT_USER_ERROR, UserError
from lanmsff.runtime.slurm import route_usr1_to_submitit
from lanmsff.utils.config import config_group_options, is_config_group
from lanmsff.utils.console import quiet_console

log = logging.getLogger(__name__)
_SWEEP_FUNCTION = re.compile(r"^\w+\(.*\)$")  # range(...), choice(...), interval(...)


def unknown_group_options(argv: Sequence[str], conf_dir: Path | None = None) -> list[str]:
    """Messages for ``group=option`` arguments that name an option the group does not have."""
    problems = []
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        group = key.lstrip("+~")
        if "." in group or group == "hydra" or not is_config_group(group, conf_dir):
            continue
        if _SWEEP_FUNCTION.match(value.strip()) or value.strip() in ("null", ""):
            continue
        choices = config_group_options(group, conf_dir)
        for option in (v.strip() for v in value.split(",")):
            if option not in choices:
                problems.append(f"{group}={option}: no such {group} config; choices: {', '.join(choices)}")
    return problems


def check_group_options(argv: Sequence[str] | None = None, conf_dir: Path | None = None) -> None:
    """Exit with status 2 and the valid choices if a ``group=option`` argument names no config."""
    problems = unknown_group_options(sys.argv[1:] if argv is None else argv, conf_dir)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


_sigterm_received = threading.Event()  # set by the first SIGTERM of the task that run_cli runs


def _sigterm_to_exception(signum: int, frame: Any) -> None:
    """SIGTERM outside Lightning's loops (data preparation, model set-up, writing results) stops the task
    with ``SIGTERMException``, which the run recorder records as ``status: interrupted``.

    Inside ``fit``/``test`` Lightning's handler is installed and calls this one too: then it does
    nothing, and Lightning stops after the current batch; nor does it while an exception is already on
    its way out (submitit's SystemExit after its warning signal: a requeue's SIGTERM follows within
    milliseconds and must not cut the summary short). Needed under submitit, which ignores SIGTERM
    (``scancel``, ``scontrol requeue``): the job was SIGKILLed ``KillWait`` later without a summary.
    """
    _sigterm_received.set()
    if signal.getsignal(signal.SIGTERM) is not _sigterm_to_exception:
        return  # Lightning's handler is installed (it called this one)
    if sys.exc_info()[1] is not None:
        return
    raise SIGTERMException(128 + signum)


def run_cli(
    task: Callable[[DictConfig], dict[str, Any]],
    cfg: DictConfig,
    *,
    exit_status: Callable[[dict[str, Any]], int] | None = None,
) -> float | None:
    """Run a task from a Hydra entry point; returns ``cfg.optimized_metric`` for sweepers.

    ``exit_status`` maps the task's summary to the process's exit status (e.g. 1 when export.py's
    check failed); without it a successful task returns normally.
    """
    quiet_console()
    in_main_thread = threading.current_thread() is threading.main_thread()
    _sigterm_received.clear()
    if in_main_thread:
        previous_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_exception)
        route_usr1_to_submitit()
    try:
        summary = task(cfg)
    except SIGTERMException:
        _exit_on_sigterm()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        if _is_multirun():
            return math.nan
        sys.exit(EXIT_USER_ERROR)
    except Exception as err:
        if _sigterm_received.is_set():  # e.g. a logger whose service process the same SIGTERM stopped
            log.warning("After the SIGTERM: %s: %s", type(err).__name__, err)
            _exit_on_sigterm()
        if not _is_multirun():
            raise
        log.exception("Job failed; recorded in its summary.json, continuing with the sweep")
        return math.nan  # a failed trial for sweepers that optimise the returned value
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_sigterm)
    if _sigterm_received.is_set():  # it came after the last batch: SLURM stops (or requeues) the job anyway
        _exit_on_sigterm()
    if exit_status is not None and (status := exit_status(summary)) != 0:
        sys.exit(status)
    metric = cfg.get("optimized_metric")
    return summary["metrics"].get(metric, math.nan) if metric else None


def _exit_on_sigterm() -> None:
    """Exit with status 143 (128 + SIGTERM), never with a result: a job that SLURM requeues (``scontrol
    requeue``, pre-emption) must leave submitit no result file, or the launcher would take this attempt
    for the job's outcome and return while the next attempt runs; after ``scancel`` the launcher finds
    the job CANCELLED without a result and fails. SystemExit passes through Hydra's ``run_job`` and
    submitit's ``process_job``, which catch ``Exception`` only."""
    log.warning("Stopped by SIGTERM; restart in the same run folder (resume=auto) to continue")
    sys.exit(128 + signal.SIGTERM)
