"""Checks shared by the Hydra entry points (train.py, eval.py, predict.py, export.py).

Hydra reports an unknown config-group option (``model=lanmsf``) with a traceback hint and exit
status 1; the entry points check group choices first, so the user gets the list of valid choices
and exit status 2, before anything starts.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from lanmsff.errors import EXIT_USER_ERROR

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
_SWEEP_FUNCTION = re.compile(r"^\w+\(.*\)$")  # range(...), choice(...), interval(...)


def group_choices(conf_dir: Path, group: str) -> list[str]:
    """Option names of a config group (``conf/<group>/*.yaml``); empty for an unknown group."""
    folder = conf_dir / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def unknown_group_options(argv: Sequence[str], conf_dir: Path = CONF_DIR) -> list[str]:
    """Messages for ``group=option`` arguments that name an option the group does not have."""
    problems = []
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, value = arg.split("=", 1)
        group = key.lstrip("+~")
        if "." in group or group == "hydra" or not (conf_dir / group).is_dir():
            continue
        choices = group_choices(conf_dir, group)
        if _SWEEP_FUNCTION.match(value.strip()) or value.strip() in ("null", ""):
            continue
        for option in (v.strip() for v in value.split(",")):
            if option not in choices:
                problems.append(f"{group}={option}: no such {group} config; choices: {', '.join(choices)}")
    return problems


def check_group_options(argv: Sequence[str] | None = None, conf_dir: Path = CONF_DIR) -> None:
    """Exit with status 2 and the valid choices if a ``group=option`` argument names no config."""
    problems = unknown_group_options(sys.argv[1:] if argv is None else argv, conf_dir)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
