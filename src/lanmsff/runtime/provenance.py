"""Where a result came from: the code revision, the software, the machine, the command line and the randomness.

Every run records this in ``summary.json`` (key ``provenance``), in its loggers' config and in its
checkpoints, so that a number found in a report months later can be traced to what produced it.
Only the listed facts are recorded: environment variables are never dumped (they hold keys and
tokens), and in the command line the values of secret-looking keys (``api_key=...``) are redacted.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from lanmsff.runtime.hardware import cpu_description
from lanmsff.runtime.process import process_setup
from lanmsff.utils.config import redact_override

PACKAGES = (
    "lanmsff",
    "torch",
    "pytorch-lightning",
    "hydra-core",
    "omegaconf",
    "torchmetrics",
    "timm",
    "albumentations",
    "numpy",
    "opencv-python-headless",
)
_GIT_TIMEOUT_S = 10


def _git(folder: Path, *args: str) -> str | None:
    """Output of ``git -C folder <args>`` (stripped), or ``None`` when git is missing or fails."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=_GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_revision(folder: str | Path) -> dict[str, Any]:
    """The git revision of the checkout that holds ``folder``: commit, dirty flag, a hash of the diff.

    ``{"git": False, "reason": ...}`` outside a git checkout (e.g. an installed wheel) or without git.
    The dirty flag counts changes to tracked files; the diff hash (SHA-256 of ``git diff HEAD``) tells two
    dirty trees apart.
    """
    folder = Path(folder)
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top is None:
        return {"git": False, "reason": f"{folder} is not inside a git checkout (or git is not installed)"}
    commit = _git(folder, "rev-parse", "HEAD")
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    dirty = bool(status)
    revision: dict[str, Any] = {"git": True, "root": top, "commit": commit, "dirty": dirty}
    if dirty:
        diff = _git(folder, "diff", "HEAD") or ""
        revision["diff_sha256"] = hashlib.sha256(diff.encode()).hexdigest()
    return revision


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages a result depends on (``None`` for one that is not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    versions["cudnn"] = str(torch.backends.cudnn.version()) if torch.cuda.is_available() else None
    return versions


def machine(precision: Any = None) -> dict[str, Any]:
    """The CPU (model, the flags that matter, native bf16, torch's kernel capability and any instruction-set
    limits set in the environment), torch's thread count, the process set-up (:mod:`lanmsff.runtime.process`),
    the GPUs and the
    precision used."""
    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    )
    cpu = cpu_description()
    setup = process_setup()
    return {
        "cpu": cpu["cpu"],
        "cpu_id": cpu["cpu_id"],
        "cpu_flags": cpu["flags"],
        "native_bf16": cpu["native_bf16"],
        "cpu_capability": cpu["capability"],
        "isa_limits": cpu["isa_limits"],
        "cores": cpu["cores"],
        "threads": torch.get_num_threads(),
        "allocator_tuned": setup["allocator_tuned"],
        "process_setup": setup,
        "gpus": gpus,
        "precision": None if precision is None else str(precision),
        "platform": platform.platform(),
    }


def provenance(*, overrides: list[str], seed: Any, deterministic: Any, precision: Any) -> dict[str, Any]:
    """Everything :mod:`lanmsff.runtime.provenance` records for one run."""
    import lanmsff

    return {
        "code": {
            "package": code_revision(Path(lanmsff.__file__).parent),
            "working_directory": code_revision(Path.cwd()),
        },
        "environment": package_versions(),
        "command": {
            "argv": [Path(sys.argv[0]).name, *map(redact_override, sys.argv[1:])],
            "overrides": [redact_override(o) for o in overrides],
        },
        "machine": machine(precision),
        "randomness": {"seed": seed, "deterministic": bool(deterministic)},
    }
