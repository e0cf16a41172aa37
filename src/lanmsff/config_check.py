"""What the commands check before Hydra runs them: ``--help``, and the command line against the configs.

* ``--help`` / ``-h`` print a short help made from the configs themselves: the user-facing groups and
  their options (internal parts such as ``data/common`` and ``model/hints`` are not groups), the most
  used overrides, and where the docs are. Hydra's own help stays at ``--hydra-help``.
* An unknown group option (``model=lanmsf``) ends with exit status 2 and the valid choices
  (:func:`lanmsff.entrypoints.check_group_options`).
* The typed check (:func:`check_overrides`): the config is composed once, without the ``key=value``
  overrides, and each override is applied to it as Hydra would. An unknown key (``trainer.max_epoch=5``)
  or a value of the wrong kind (``trainer.max_epochs=abc``) ends with exit status 2 and a message naming
  the key, before any data is read. The schema is the configs themselves: a key keeps the kind of its
  default (an integer stays an integer, a list a list), a null default takes anything, and
  :data:`ALSO_ALLOWED` names the keys that take more than one kind (``trainer.devices=auto``). Every
  value of a sweep (``data.fold=0,1,x``) is checked.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf

from lanmsff.entrypoints import check_group_options
from lanmsff.errors import EXIT_USER_ERROR
from lanmsff.utils.config import CONF_DIR, config_group_options, is_config_group, user_config_dir

COMMANDS = {"train": "lanmsff-train", "eval": "lanmsff-eval", "predict": "lanmsff-predict", "export": "lanmsff-export"}
DOCS = "the docs/ folder of the lanmsff source (make docs builds the site)"
COMMON_OVERRIDES = {
    "train": [
        ("experiment=demo", "a whole study: data, model, grid (the demo, kdef_paper, kdef_ablation, ...)"),
        ("data.root=/path/to/KDEF_and_AKDEF", "where your licensed copy is"),
        ("trainer.max_epochs=100 data.batch_size=32", "training length and batch"),
        ("data.fold=0 data.num_folds=10", "which person-independent fold"),
        ("trainer=gpu | trainer=ddp trainer.devices=4", "devices"),
        ("logger=wandb", "Weights & Biases (offline without a key; never prompts)"),
        ("-m hydra/launcher=slurm data.fold=0,1,2", "a sweep, as SLURM array jobs"),
        ("trainer.fast_dev_run=true", "one batch of everything, to check a set-up"),
    ],
    "eval": [
        ("ckpt_path=<run>/checkpoints/<file>.ckpt", "the checkpoint to evaluate (its data settings are reused)"),
        ("tta=flip", "test-time augmentation"),
        ("data=kdef data.root=...", "another data set (cross-dataset test)"),
    ],
    "predict": [
        ("ckpt_path=<file>.ckpt input=photos/", "photos: a file, a folder or a glob"),
        ("input=clip.mp4 | input=webcam", "a video or the camera"),
        ("output=<folder>", "where predictions are written"),
    ],
    "export": [
        ("ckpt_path=<file>.ckpt", "the checkpoint to export to ONNX (checked against PyTorch)"),
        ("opset=17", "the ONNX opset"),
    ],
}


def config_groups(config_name: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """The config groups of a primary config's defaults list (``hydra`` and ``paths`` included)."""
    primary = yaml.safe_load((Path(conf_dir) / f"{config_name}.yaml").read_text(encoding="utf-8")) or {}
    groups = []
    for entry in primary.get("defaults", []):
        if isinstance(entry, dict):
            key = next(iter(entry)).replace("optional ", "").replace("override ", "").strip()
            groups.append(key)
    return groups


def help_text(config_name: str, conf_dir: Path = CONF_DIR) -> str:
    """The short help of a command: its groups and their options, the most used overrides, the docs."""
    command = COMMANDS[config_name]
    lines = [f"usage: {command} [group=option ...] [key=value ...]   (python {config_name}.py works the same)", ""]
    lines.append("Config groups (group=option):")
    for group in config_groups(config_name, conf_dir):
        if group in ("hydra", "paths"):
            continue
        options = config_group_options(group, conf_dir)
        shown = ", ".join(options) if options else f"(none yet: your own in {user_config_dir() / group})"
        lines.append(f"  {group:<15} {shown}")
    if overrides := COMMON_OVERRIDES.get(config_name):
        lines += ["", "Often used:"]
        width = max(len(arg) for arg, _ in overrides)
        lines += [f"  {arg:<{width}}  {what}" for arg, what in overrides]
    lines += [
        "",
        f"Your settings: {user_config_dir()}/local/default.yaml (per machine), your own group options there too.",
        f"See the whole config: {command} --cfg job    Hydra's help: {command} --hydra-help",
        f"Docs: {DOCS}",
    ]
    return "\n".join(lines)


# Keys that take more kinds of value than their default's (Lightning's own unions); patterns as fnmatch.
ALSO_ALLOWED: dict[str, tuple[type, ...]] = {
    "trainer.devices": (int, str, list),
    "trainer.fast_dev_run": (bool, int),
    "trainer.precision": (str, int),
    "trainer.deterministic": (bool, str),
    "trainer.limit_*_batches": (int, float),
    "trainer.val_check_interval": (int, float),
    "trainer.max_epochs": (int,),
    "trainer.max_steps": (int,),
}
# Hydra's own flags that take a value (their value is not an override)
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--experimental-rerun"}
_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list [a,b]"}


def _kind(value: Any) -> type | None:
    """The kind of a config value: bool, int, float, str, list or dict (None for null)."""
    if value is None:
        return None
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind
    if isinstance(value, list | ListConfig):
        return list
    return dict if isinstance(value, dict | DictConfig) else type(value)


def _allowed_kinds(key: str, default: Any) -> tuple[type, ...] | None:
    """The kinds of value ``key`` takes; None when anything goes (a null default)."""
    for pattern, kinds in ALSO_ALLOWED.items():
        if fnmatch.fnmatchcase(key, pattern):
            return kinds
    kind = _kind(default)
    if kind is None:
        return None
    if kind is float:
        return (int, float)
    if kind is str:
        return (str, int, float, bool)  # a name or a path may look like a number
    return (kind,)


def type_problem(key: str, default: Any, value: Any) -> str | None:
    """Why ``value`` does not fit ``key`` (whose default is ``default``), or None when it does."""
    if value is None or (isinstance(value, str) and "${" in value):
        return None  # null, or an interpolation resolved later
    allowed = _allowed_kinds(key, default)
    if allowed is None or _kind(value) in allowed:
        return None
    wanted = " or ".join(_KIND_NAMES.get(kind, kind.__name__) for kind in allowed)
    return f"{key}={value!r}: expected {wanted} (its default is {default!r})"


def _overrides(argv: Sequence[str]) -> list[str]:
    """The overrides of a command line, without Hydra's flags (``-m``, ``--cfg job``, ...)."""
    found, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = arg in _FLAGS_WITH_VALUE
        else:
            found.append(arg)
    return found


def _values(override: Any) -> Iterator[Any]:
    """The values an override sets: one, or each of a sweep's (interval sweeps are not enumerable)."""
    if not override.is_sweep_override():
        yield override.value()
        return
    try:
        yield from override.sweep_iterator()
    except Exception:  # an Optuna interval(...): the sweeper checks its bounds
        return


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir, initialize_config_module

    if os.environ.get("LANMSFF_CONF"):
        context = initialize_config_dir(config_dir=str(Path(CONF_DIR).resolve()), version_base="1.3")
    else:
        context = initialize_config_module(config_module="lanmsff.conf", version_base="1.3")
    with context:
        return compose(config_name=config_name, overrides=overrides)


def _has_key(cfg: DictConfig, key: str) -> bool:
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, throw_on_resolution_failure=False) if parent_key else cfg
    if isinstance(parent, ListConfig):
        return leaf.isdigit()
    # keys(): a mandatory value (???) is not `in` a DictConfig
    return isinstance(parent, DictConfig) and leaf in parent.keys()  # noqa: SIM118


def _unknown_key(cfg: DictConfig, key: str) -> str:
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    hint = ""
    if isinstance(parent, DictConfig):
        close = difflib.get_close_matches(leaf, [str(k) for k in parent], n=1)
        hint = f"; did you mean {parent_key + '.' if parent_key else ''}{close[0]}?" if close else ""
    return f"{key}: no such key (add a new one with +{key}=...){hint}"


def override_problems(config_name: str, argv: Sequence[str]) -> list[str]:
    """Messages for overrides that name no key or give a value of the wrong kind (see the module doc)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(_overrides(argv))
    except HydraException as err:
        return [str(err).strip()]
    choices, values = [], []
    for override in parsed:
        key = override.get_key_element().lstrip("+~")
        is_value = "." in key or not is_config_group(key.split("@")[0])
        if key.startswith("hydra.") or key == "hydra" or "/" in key or not is_value:
            if not key.startswith("hydra") and not override.is_sweep_override():
                choices.append(override.input_line)
            elif not key.startswith("hydra"):  # a group sweep (model=a,b): compose with the first option
                choices.append(f"{override.get_key_element()}={next(iter(override.sweep_string_iterator()))}")
            continue
        values.append(override)
    try:
        cfg = _compose(config_name, choices)
    except HydraException as err:
        return [str(err).strip().replace("\n", " ")]
    problems = []
    for override in values:
        key = override.get_key_element().lstrip("+~")
        if override.is_add() or override.is_force_add() or override.is_delete():
            continue
        if not _has_key(cfg, key):
            problems.append(_unknown_key(cfg, key))
            continue
        default = OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
        problems += [p for value in _values(override) if (p := type_problem(key, default, value))]
    return problems


def check_overrides(config_name: str, argv: Sequence[str]) -> None:
    """Exit with status 2 and one line per problem if an override names no key or has the wrong kind."""
    if any(arg.startswith(("--config-name", "-cn", "--config-dir", "-cd")) for arg in argv):
        return  # another primary config: Hydra checks it
    problems = override_problems(config_name, argv)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        sys.exit(EXIT_USER_ERROR)


def check_command_line(config_name: str, argv: Sequence[str]) -> None:
    """Answer ``--help`` (exit 0), refuse unknown group options, unknown keys and values of the wrong kind
    (exit 2), all before Hydra starts."""
    if any(arg in ("--help", "-h") for arg in argv):
        print(help_text(config_name))
        sys.exit(0)
    check_group_options(argv)
    check_overrides(config_name, argv)
