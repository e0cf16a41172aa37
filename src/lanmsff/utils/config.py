"""Config helpers: plain containers without secrets, and Lightning callbacks/loggers from config groups."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from lanmsff.errors import UserError

log = logging.getLogger(__name__)

# The project's Hydra configs: shipped inside the package (lanmsff/conf, Hydra's pkg://lanmsff.conf), or
# a whole replacement folder named by $LANMSFF_CONF.
PACKAGE_CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
CONF_DIR = Path(os.environ.get("LANMSFF_CONF") or PACKAGE_CONF_DIR)


def hydra_config_path() -> str:
    """The entry points' ``config_path``: ``pkg://lanmsff.conf``, or the folder ``$LANMSFF_CONF`` names."""
    override = os.environ.get("LANMSFF_CONF")
    return str(Path(override).resolve()) if override else "pkg://lanmsff.conf"


def user_config_dir(environ: dict[str, str] | None = None) -> Path:
    """The user's own config folder, searched before the package's: ``$LANMSFF_CONFIG_DIR``, else
    ``~/.config/lanmsff`` (the primary configs' ``hydra.searchpath`` names the same folder).

    It holds per-machine settings (``local/default.yaml``) and the user's own group options, e.g.
    ``experiment/my_study.yaml``.
    """
    env = os.environ if environ is None else environ
    if env.get("LANMSFF_CONFIG_DIR"):
        return Path(env["LANMSFF_CONFIG_DIR"])
    return Path(env.get("HOME", ".")) / ".config" / "lanmsff"


_SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|passwd|credential)", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"^[0-9a-f]{40}$|^local-[0-9a-f]{40}$", re.IGNORECASE)  # W&B key formats
REDACTED = "<redacted>"


def config_folders(conf_dir: Path | None = None) -> list[Path]:
    """The folders configs come from, as Hydra searches them: the user's, then the project's."""
    return [user_config_dir(), Path(conf_dir or CONF_DIR)]


def config_group_options(group: str, conf_dir: Path | None = None) -> list[str]:
    """Option names of a config group (``<group>/*.yaml`` in the user's config folder or the project's),
    sorted; empty for an unknown group.

    Files in sub-folders (shared parts such as ``data/common/``) are not options of the group.
    """
    return sorted({p.stem for folder in config_folders(conf_dir) for p in (folder / group).glob("*.yaml")})


def is_config_group(group: str, conf_dir: Path | None = None) -> bool:
    """Whether ``group`` is a config group (a folder) in the user's config folder or the project's."""
    return any((folder / group).is_dir() for folder in config_folders(conf_dir))


def instantiate(config: Any, *args: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that lets a :class:`UserError` of the target surface as itself.

    Hydra wraps every exception of a target in ``InstantiationException``; a bad setting found by a
    constructor (e.g. ``data.fold=10``) must reach the entry point as the user error it is.
    """
    try:
        return hydra_instantiate(config, *args, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        raise


def redact(obj: Any) -> Any:
    """Copy of a plain container with secret-looking keys and W&B-key-looking values replaced."""
    if isinstance(obj, dict):
        return {k: REDACTED if _SECRET_KEY.search(str(k)) else redact(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, str) and _SECRET_VALUE.match(obj):
        return REDACTED
    return obj


def redact_override(arg: str) -> str:
    """A command-line argument with its value redacted when its key or value looks secret (``api_key=...``)."""
    key, sep, value = arg.partition("=")
    if sep and (_SECRET_KEY.search(key) or _SECRET_VALUE.match(value.strip("'\""))):
        return f"{key}={REDACTED}"
    return REDACTED if _SECRET_VALUE.match(arg) else arg


def to_plain(cfg: Any, *, resolve: bool = True) -> Any:
    """A config as plain dicts and lists (secrets redacted), safe to log and to store in checkpoints."""
    if OmegaConf.is_config(cfg):
        cfg = OmegaConf.to_container(cfg, resolve=resolve, throw_on_missing=False)
    return redact(cfg)


# Optional packages that a config entry needs: (its _target_ ends with, any of these modules, the extra to install)
OPTIONAL_NEEDS = (("TensorBoardLogger", ("tensorboard", "tensorboardX"), "tensorboard"),)


def check_optional_need(kind: str, name: str, target: str) -> None:
    """:class:`UserError` naming the extra to install when ``target`` needs an optional package that is missing."""
    import importlib.util

    for suffix, modules, extra in OPTIONAL_NEEDS:
        if target.endswith(suffix) and not any(importlib.util.find_spec(m) for m in modules):
            raise UserError(f"{kind} '{name}' needs {modules[0]}: pip install 'lanmsff[{extra}]' (or choose another)")


def _instantiate_group(group: DictConfig | None, kind: str) -> list[Any]:
    items = []
    for name, conf in (group or {}).items():
        if isinstance(conf, DictConfig) and "_target_" in conf:
            check_optional_need(kind, str(name), str(conf._target_))
            log.debug("Instantiating %s <%s>", kind, conf._target_)
            items.append(instantiate(conf))
        elif conf is not None:
            raise TypeError(f"{kind} config '{name}' has no _target_")
    return items


def instantiate_callbacks(cfg: DictConfig | None) -> list[Any]:
    """Every entry of the ``callbacks`` group that has a ``_target_``."""
    return _instantiate_group(cfg, "callback")


def wandb_has_credentials() -> bool:
    """True when W&B can log in without asking: an API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        path = os.environ.get("NETRC", os.path.expanduser("~/.netrc"))
        auth = netrc.netrc(path).authenticators(
            os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("//")[-1]
        )
        return bool(auth and auth[2])
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def run_tags(cfg: DictConfig) -> list[str]:
    """Tags that identify a run in a study: the config's ``tags`` plus variant, protocol and fold."""
    tags = [str(t) for t in (cfg.get("tags") or [])]
    data = cfg.get("data") or {}
    for tag in (cfg.get("variant"), data.get("protocol"), None if data.get("fold") is None else f"fold{data.fold}"):
        if tag is not None and str(tag) not in tags:
            tags.append(str(tag))
    return tags


def run_name(cfg: DictConfig) -> str:
    """``<variant>-fold<k>`` (``<variant>-seed<s>`` without folds): the run's name in W&B."""
    variant = cfg.get("variant") or cfg.get("task_name") or "run"
    fold = (cfg.get("data") or {}).get("fold")
    return f"{variant}-fold{fold}" if fold is not None else f"{variant}-seed{cfg.get('seed')}"


def instantiate_loggers(cfg: DictConfig | None, *, tags: list[str] | None = None, name: str | None = None) -> list[Any]:
    """Every entry of the ``logger`` group; W&B goes offline by itself when no API key is configured
    or its server does not answer.

    W&B never prompts: without credentials it logs offline (``wandb sync`` uploads later), and
    checkpoints are uploaded as artifacts only when online and ``log_model`` is set. Every attempt of
    a run folder logs to one W&B run (its id kept there, ``resume="allow"``), in the group
    ``<study>/<sweep id>``.
    """
    if cfg and cfg.get("wandb") is not None:
        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.setdefault("WANDB_CONSOLE", "off")
        _choose_wandb_mode(Path(cfg.wandb.get("save_dir") or ".") / "wandb")
        cfg = cfg.copy()
        with open_dict(cfg):
            if tags is not None:
                cfg.wandb.tags = tags
            if name and not cfg.wandb.get("name"):
                cfg.wandb.name = name
            _same_run_across_attempts(cfg.wandb)
            if os.environ.get("WANDB_MODE") == "offline":
                cfg.wandb.offline = True
                if cfg.wandb.get("log_model"):
                    log.warning("W&B: log_model ignored offline (checkpoints stay in the run folder)")
                    cfg.wandb.log_model = False
    loggers = _instantiate_group(cfg, "logger")
    for logger in loggers:
        _drop_unset_wandb_anonymous(logger)
        if isinstance(init := getattr(logger, "_wandb_init", None), dict):
            shown = ("id", "resume", "group", "job_type", "name", "project", "entity")
            said = ", ".join(f"{key}={init.get(key)}" for key in shown)
            log.info("W&B init: %s, offline=%s", said, getattr(logger, "_offline", None))
    return loggers


def _choose_wandb_mode(folder: Path) -> None:
    """Offline (``WANDB_MODE=offline``) without an API key, or when the W&B server does not answer a short
    connect: ``wandb.init`` would wait about 90 s on a compute node without a route, then fail."""
    from lanmsff.utils.wandb_runs import base_url, unreachable_reason

    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        return
    sync = f"upload later: wandb sync {folder}/offline-run-*"
    if not wandb_has_credentials():
        os.environ["WANDB_MODE"] = "offline"
        log.info("W&B: no API key configured, logging offline to %s; %s", folder, sync)
    elif (reason := unreachable_reason(base_url())) is not None:
        os.environ["WANDB_MODE"] = "offline"
        log.warning("W&B: cannot reach %s (%s); logging offline to %s; %s", base_url(), reason, folder, sync)


def _same_run_across_attempts(wandb_cfg: DictConfig) -> None:
    """The W&B run of this run folder (its id kept in ``wandb/run_id``; ``resume="allow"``), in the group
    ``<study>/<sweep id>`` (:mod:`lanmsff.utils.wandb_runs`); ``study_id`` is not a ``wandb.init`` argument."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from pytorch_lightning.utilities import rank_zero_only

    from lanmsff.utils.wandb_runs import folder_run_id, sweep_group, sweep_id

    study_id = wandb_cfg.pop("study_id", None)
    save_dir = wandb_cfg.get("save_dir") or "."
    if not wandb_cfg.get("id"):
        wandb_cfg.id = folder_run_id(save_dir, write=rank_zero_only.rank == 0)
    if not wandb_cfg.get("resume"):
        wandb_cfg.resume = "allow"
    if wandb_cfg.get("group") and wandb_cfg.get("group_by_sweep", True):
        multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        wandb_cfg.group = sweep_group(str(wandb_cfg.group), sweep_id(save_dir, multirun=multirun, study_id=study_id))
    wandb_cfg.pop("group_by_sweep", None)


def _drop_unset_wandb_anonymous(logger: Any) -> None:
    """Lightning's WandbLogger passes ``anonymous=None`` to ``wandb.init``, and W&B warns on any value of that
    deprecated setting; leave it out when it is unset (the same run, without the warning)."""
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and init.get("anonymous") is None:
        init.pop("anonymous", None)
