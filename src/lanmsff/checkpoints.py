"""Checkpoints written by ``train.py``: loading them safely, and the network, class names and run config inside.

A checkpoint holds the weights, the ``FERModule`` hyper-parameters (the network config, class and
group names, input geometry, optimiser settings) and, under :data:`lanmsff.records.CHECKPOINT_KEY`,
the training run's resolved config (what ``eval.py`` rebuilds the test split from and ``predict.py``
reads the preprocessing from). Files are read with ``torch.load(weights_only=True)``, and a network
is only built from a stored config whose ``_target_`` names a lanmsff builder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from lanmsff.errors import UserError
from lanmsff.records import CHECKPOINT_KEY, SUMMARY_FILE, embedded_config, read_summary
from lanmsff.training.module import FERModule
from lanmsff.utils.io import atomic_write

_ALLOWED_TARGETS = ("lanmsff.",)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint of this project safely (``weights_only=True``), or raise :class:`UserError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(
            f"ckpt_path={path}: no such file; pass the .ckpt file of a training run (checkpoints/ in its run folder)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"ckpt_path={path}: not a loadable PyTorch checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise UserError(f"ckpt_path={path}: not a checkpoint written by lanmsff's train.py")
    return checkpoint


class LoadedModel(NamedTuple):
    """A network restored from a checkpoint, with what is needed to feed it."""

    net: nn.Module
    class_names: list[str]
    image_size: int
    config: dict[str, Any] | None  # the training run's resolved config (``None`` if not embedded)


def _check_net_config(net_cfg: Any, path: Path) -> None:
    """Refuse network configs that would instantiate anything outside this package.

    ``weights_only=True`` keeps pickled code out, but the network is built from the config stored in
    the checkpoint: its ``_target_`` must name a lanmsff builder, so a crafted file cannot run
    arbitrary callables.
    """
    target = net_cfg.get("_target_") if isinstance(net_cfg, dict) else None
    if not isinstance(target, str) or not target.startswith(_ALLOWED_TARGETS):
        raise UserError(f"ckpt_path={path}: the stored network config has _target_={target!r}, not a lanmsff model")


def load_module(ckpt_path: str | Path) -> tuple[FERModule, dict[str, Any]]:
    """The ``FERModule`` of a checkpoint with its weights (train mode as built), and the raw checkpoint.

    Raises:
        UserError: a missing file, a file that is not a lanmsff checkpoint, or weights that do not fit.
    """
    path = Path(ckpt_path).expanduser()
    checkpoint = load_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or "net" not in hparams or "class_names" not in hparams:
        raise UserError(f"ckpt_path={path}: the checkpoint has no network description (hyper_parameters.net)")
    _check_net_config(hparams["net"], path)
    try:
        module = FERModule(**hparams)
    except TypeError as err:
        raise UserError(f"ckpt_path={path}: unexpected hyper-parameters for FERModule ({err})") from None
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, KeyError) as err:
        raise UserError(f"ckpt_path={path}: the weights do not fit the stored network ({err})") from None
    return module, checkpoint


def load_model(ckpt_path: str | Path) -> LoadedModel:
    """The eval-mode backbone of a checkpoint, its class names, input size and the training run's config.

    Returns:
        ``LoadedModel(net, class_names, image_size, config)``; unpack the first three as
        ``net, class_names, image_size, _ = load_model(path)``.

    Raises:
        UserError: a missing file, a file that is not a lanmsff checkpoint, or weights that do not fit.
    """
    return model_of(*load_module(ckpt_path))


def model_of(module: FERModule, checkpoint: dict[str, Any]) -> LoadedModel:
    """The :class:`LoadedModel` of a module and checkpoint returned by :func:`load_module`."""
    hparams = checkpoint["hyper_parameters"]
    net = module.net.eval()
    return LoadedModel(
        net, list(hparams["class_names"]), int(hparams.get("image_size", 64)), embedded_config(checkpoint)
    )


def store_temperature(checkpoint: dict[str, Any], temperature: float) -> None:
    """Keep the temperature of ``calibrate=temperature`` inside a checkpoint dictionary (read by
    :func:`stored_temperature`)."""
    checkpoint.setdefault(CHECKPOINT_KEY, {})["temperature"] = float(temperature)


def keep_temperature(ckpt_path: str | Path, temperature: float) -> None:
    """Write the temperature of ``calibrate=temperature`` into the checkpoint file it was fitted for (atomically),
    so that prediction applies it wherever the file is copied."""
    checkpoint = load_checkpoint(ckpt_path)
    store_temperature(checkpoint, temperature)
    atomic_write(ckpt_path, lambda f: torch.save(checkpoint, f))


def stored_temperature(checkpoint: dict[str, Any], ckpt_path: str | Path) -> float | None:
    """The temperature fitted for these weights by ``calibrate=temperature``, or ``None``.

    Taken from the checkpoint (:func:`store_temperature`) or else from the ``summary.json`` of the run folder
    the checkpoint sits in (``<run>/checkpoints/<file>.ckpt``), but only when that run tested this very file:
    a temperature is fitted to one set of weights.
    """
    embedded = checkpoint.get(CHECKPOINT_KEY)
    if isinstance(embedded, dict) and isinstance(embedded.get("temperature"), int | float):
        return float(embedded["temperature"])
    path = Path(ckpt_path).expanduser().resolve()
    summary_path = path.parent.parent / SUMMARY_FILE
    summary = read_summary(summary_path) if summary_path.is_file() else None
    if not summary or not isinstance(summary.get("temperature"), int | float):
        return None
    tested = (summary.get("test_checkpoint") or {}).get("path")
    if not tested or Path(tested).name != path.name:
        return None
    if Path(tested).is_absolute() and Path(tested).resolve() != path:
        return None
    return float(summary["temperature"])
