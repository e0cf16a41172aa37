"""The console scripts: ``lanmsff-train``, ``lanmsff-eval``, ``lanmsff-predict``, ``lanmsff-export`` and
``lanmsff-compare`` (``lanmsff-data`` and ``lanmsff-synthetic`` live with the data layer).

The repository's ``train.py``, ``eval.py``, ``predict.py`` and ``export.py`` call the same functions, so a
source checkout and an installed wheel run the same code with the same configs: those shipped inside the
package (``lanmsff/conf``, Hydra's ``pkg://lanmsff.conf``), or ``$LANMSFF_CONF`` when set, plus the user's
own config folder (:func:`lanmsff.utils.config.user_config_dir`).

Importing this module imports neither torch nor Hydra: each command first prepares the process
(:func:`lanmsff.runtime.process.prepare_process`, before torch loads), then answers ``--help`` and checks
the command line (:mod:`lanmsff.config_check`: exit status 2 and the key at fault, before any data is
read), then runs its task through Hydra.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from lanmsff.runtime.process import prepare_process


def _hydra_command(config_name: str, task_ref: str, *, exit_status_ref: str | None = None) -> None:
    """Run ``task_ref`` (``module:function``) as a Hydra application over the config ``config_name``."""
    prepare_process()  # before torch is imported (libgomp reads its spin count when it loads)
    import importlib

    import hydra
    from omegaconf import DictConfig

    from lanmsff.config_check import check_command_line
    from lanmsff.entrypoints import run_cli
    from lanmsff.utils.config import hydra_config_path

    def resolve(ref: str) -> Callable[..., Any]:
        module, name = ref.split(":")
        return getattr(importlib.import_module(module), name)

    check_command_line(config_name, sys.argv[1:])
    task = resolve(task_ref)
    exit_status = resolve(exit_status_ref) if exit_status_ref else None

    @hydra.main(version_base="1.3", config_path=hydra_config_path(), config_name=config_name)
    def main(cfg: DictConfig) -> float | None:
        return run_cli(task, cfg, exit_status=exit_status)

    main()


def train() -> None:
    """``lanmsff-train`` (``python train.py``): train a model, e.g. ``lanmsff-train model=lanmsff data=kdef``."""
    _hydra_command("train", "lanmsff.tasks.train:train")


def evaluate() -> None:
    """``lanmsff-eval`` (``python eval.py``): evaluate a checkpoint, ``lanmsff-eval ckpt_path=<file>``."""
    _hydra_command("eval", "lanmsff.tasks.evaluate:evaluate")


def predict() -> None:
    """``lanmsff-predict`` (``python predict.py``): classify the faces of photos, videos or a webcam."""
    _hydra_command("predict", "lanmsff.tasks.predict:predict")


def export() -> None:
    """``lanmsff-export`` (``python export.py``): export to ONNX and check it (exit 1 on a failed check)."""
    _hydra_command("export", "lanmsff.tasks.export:export_task", exit_status_ref="lanmsff.tasks.export:exit_status")


def compare() -> None:
    """``lanmsff-compare`` (``python -m lanmsff.analysis``): compare the runs of studies, with paired tests."""
    from lanmsff.analysis.cli import main

    sys.exit(main())
