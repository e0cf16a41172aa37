"""What the commands check before Hydra runs them: ``--help``, and the command line against the configs.

* ``--help`` / ``-h`` print a short help made from the configs themselves: the user-facing groups and
  their options (internal parts such as ``data/common`` and ``model/hints`` are not groups), the most
  used overrides, and where the docs are. Hydra's own help stays at ``--hydra-help``.
* An unknown group option (``model=lanmsf``) ends with exit status 2 and the valid choices
  (:func:`lanmsff.entrypoints.check_group_options`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from lanmsff.entrypoints import check_group_options
from lanmsff.utils.config import CONF_DIR, config_group_options, user_config_dir

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


def check_command_line(config_name: str, argv: Sequence[str]) -> None:
    """Answer ``--help`` (exit 0) and refuse unknown group options (exit 2) before Hydra starts."""
    if any(arg in ("--help", "-h") for arg in argv):
        print(help_text(config_name))
        sys.exit(0)
    check_group_options(argv)
