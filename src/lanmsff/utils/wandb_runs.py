"""Setting up and ending the W&B run of a job: one run per run folder across requeues, the group of a
study's sweep, a quick check that the server answers, and a finish that survives the job's SIGTERM.

* :func:`folder_run_id`: the W&B run id kept in ``<save_dir>/wandb/run_id``. A requeued or restarted
  job in the same run folder reads it back and resumes the same W&B run (``id=...``,
  ``resume="allow"``) instead of starting a new one per attempt.
* :func:`sweep_group`: ``<study>/<sweep id>``, the sweep id being ``study_id`` when set, else the time
  stamp of the multirun folder (of the run folder for a single run), so that reruns, smoke runs and
  real runs of a study never share a group. :func:`group_matches` is the rule ``compare --wandb
  --group`` selects runs by.
* :func:`unreachable_reason`: a short TCP connect to the W&B server; ``wandb.init`` would wait about
  90 s on a compute node without a route to it, then fail.
* :func:`finish_wandb`: ``wandb.finish`` that only warns when W&B's service process is gone (SLURM
  sends the job's SIGTERM to every process of the job, the service included).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import string
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from lanmsff.utils.io import atomic_write_text

log = logging.getLogger(__name__)

RUN_ID_FILE = Path("wandb") / "run_id"  # under the logger's save_dir (the run folder)
DEFAULT_BASE_URL = "https://api.wandb.ai"
GROUP_SEPARATOR = "/"  # <study>/<sweep id>
CONNECT_TIMEOUT_S = 3.0
_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_run_id() -> str:
    """An 8-character W&B run id (lower-case letters and digits, as ``wandb.util.generate_id`` makes)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def folder_run_id(save_dir: str | Path, *, write: bool = True) -> str:
    """The W&B run id of the run folder ``save_dir``: the one an earlier attempt kept there, else a new
    one, kept there when ``write`` (only the process of global rank 0 writes)."""
    path = Path(save_dir) / RUN_ID_FILE
    with contextlib.suppress(OSError):
        kept = path.read_text().strip()
        if kept:
            return kept
    run_id = new_run_id()
    if write:
        atomic_write_text(path, run_id + "\n")
    return run_id


def sweep_id(output_dir: str | Path, *, multirun: bool, study_id: str | None = None) -> str:
    """``study_id`` when set, else the name of the multirun folder (``logs/<study>/multiruns/<time>/<job>``)
    or, for a single run, of the run folder (``logs/<study>/runs/<time>``)."""
    if study_id not in (None, ""):
        return str(study_id)
    folder = Path(output_dir)
    return (folder.parent if multirun else folder).name


def sweep_group(study: str, sweep: str) -> str:
    """The W&B group of a study's sweep: ``<study>/<sweep id>``."""
    return f"{study}{GROUP_SEPARATOR}{sweep}"


def group_matches(group: str | None, wanted: str) -> bool:
    """``compare --wandb ... --group WANTED``: a group with a ``/`` (``<study>/<sweep id>``) matches itself
    only; a bare study name matches every sweep of that study (and the runs grouped by the study alone,
    as before sweep ids)."""
    if group is None:
        return False
    if GROUP_SEPARATOR in wanted:
        return group == wanted
    return group == wanted or group.startswith(wanted + GROUP_SEPARATOR)


def base_url() -> str:
    """The W&B server: ``WANDB_BASE_URL``, else W&B's cloud."""
    return os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL


def first_hop(url: str) -> str:
    """Where a connection to ``url`` goes first: the proxy of its scheme (``https_proxy``, ...) unless
    ``no_proxy`` exempts its host, else ``url`` itself."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    return proxy if proxy and not urllib.request.proxy_bypass(parts.hostname or "") else url


def unreachable_reason(url: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why a TCP connection to ``url``'s host and port (its proxy's, :func:`first_hop`) fails within
    ``timeout`` seconds (``None``: it connects). A name that does not resolve, a closed port and a
    missing route all fail fast here."""
    url = first_hop(url)
    parts = urlsplit(url if "//" in url else f"//{url}")
    host = parts.hostname
    if not host:
        return f"no host in {url!r}"
    port = parts.port or (80 if parts.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as err:
        return f"{type(err).__name__}: {err.strerror or err}"


def finish_wandb(exit_code: int) -> None:
    """End the current W&B run; when W&B's service process is already gone (the job's SIGTERM reached
    it too), say so in one line instead of a traceback, and release W&B's exit hook."""
    try:
        import wandb
    except ImportError:  # pragma: no cover - wandb is a dependency
        return
    run = wandb.run
    if run is None:
        return
    try:
        wandb.finish(exit_code=exit_code)
    except Exception as err:  # whatever W&B raises, the run's own record is written already
        files = getattr(run, "dir", None)
        log.warning(
            "W&B: run %s not finished, its service process stopped with the job (%s); what it logged is in %s; "
            "a requeued job resumes the same run",
            getattr(run, "id", "?"),
            type(err).__name__,
            Path(files).parent if files else "the run folder's wandb/",
        )
        with contextlib.suppress(Exception):
            wandb.teardown()  # unregisters W&B's atexit hook first, which would print the same error again
        with contextlib.suppress(Exception):  # no run left behind for the next job of this process
            from wandb.sdk.lib import module

            module.unset_globals()
