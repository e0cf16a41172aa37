"""Every config in lanmsff/conf/ composes and instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from lanmsff.data.datamodule import FERDataModule
from lanmsff.data.kdef_names import ANGLES, EXPRESSION_NAMES
from lanmsff.runtime.hardware import NATIVE_BF16_ENV
from lanmsff.tasks.common import apply_trainer_precision
from lanmsff.training import FERModule
from lanmsff.utils.config import config_group_options, instantiate_callbacks, instantiate_loggers

from .conftest import CONF, compose_config

GPU_ONLY = {"gpu", "ddp"}


def test_every_group_has_config_group_options() -> None:
    for group in (
        "data",
        "model",
        "trainer",
        "logger",
        "callbacks",
        "paths",
        "hydra",
        "debug",
        "experiment",
        "hparams_search",
    ):
        assert config_group_options(group), group


@pytest.mark.parametrize("option", config_group_options("data"))
def test_data_configs_instantiate(option: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"data={option}"], tmp_path)
    datamodule = instantiate(cfg.data, _convert_="all")
    assert isinstance(datamodule, FERDataModule)
    assert datamodule.image_size == 64 and datamodule.batch_size == 32


@pytest.mark.parametrize("option", config_group_options("model"))
def test_model_configs_instantiate_and_run(option: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"model={option}"], tmp_path)
    module = FERModule(
        cfg.model.net,
        class_names=EXPRESSION_NAMES,
        group_names=ANGLES,
        optimizer=cfg.optim.optimizer,
        scheduler=cfg.optim.scheduler,
    )
    assert module(torch.rand(2, 1, 64, 64)).shape == (2, 7)
    optimizers = module.configure_optimizers()
    assert isinstance(optimizers["optimizer"], torch.optim.Adam)
    assert optimizers["optimizer"].defaults["eps"] == pytest.approx(1e-7)
    assert optimizers["lr_scheduler"]["scheduler"].patience == 9


@pytest.mark.parametrize("option", config_group_options("trainer"))
def test_trainer_configs(option: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"trainer={option}"], tmp_path)
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"
    if option in GPU_ONLY and not torch.cuda.is_available():
        assert cfg.trainer.accelerator == "gpu"
        return
    apply_trainer_precision(cfg)  # trainer.precision=auto, as train.py / eval.py resolve it
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    assert isinstance(trainer, pl.Trainer)


@pytest.mark.parametrize(
    ("overrides", "native_bf16", "expected"),
    [
        (["model=lanmsff"], True, "bf16-mixed"),
        (["model=lanmsff_attn_none"], True, "bf16-mixed"),
        (["model=resnet18"], True, "bf16-mixed"),
        (["model=mobilenetv3_small"], True, "32-true"),  # bf16 slows depthwise convolutions on CPUs
        (["model=lanmsff"], False, "32-true"),
        (["model=lanmsff", "trainer.precision=32-true"], True, "32-true"),
        (["model=mobilenetv3_small", "trainer.precision=bf16-mixed"], True, "bf16-mixed"),
    ],
)
def test_auto_precision_on_cpu(
    overrides: list[str], native_bf16: bool, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(NATIVE_BF16_ENV, "1" if native_bf16 else "0")
    cfg = compose_config("train", ["trainer=cpu", *overrides], tmp_path)
    apply_trainer_precision(cfg)
    assert cfg.trainer.precision == expected


@pytest.mark.parametrize("option", config_group_options("callbacks"))
def test_callback_configs(option: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"callbacks={option}"], tmp_path)
    callbacks = instantiate_callbacks(cfg.callbacks)
    assert all(isinstance(c, pl.Callback) for c in callbacks)
    if option == "default":
        names = {type(c).__name__ for c in callbacks}
        assert {"ModelCheckpoint", "EarlyStopping", "LearningRateMonitor", "RichProgressBar"} <= names
        stopping = next(c for c in callbacks if type(c).__name__ == "EarlyStopping")
        assert stopping.patience == 14 and stopping.monitor == "val/loss"


@pytest.mark.parametrize("option", config_group_options("logger"))
def test_logger_configs(option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_config("train", [f"logger={option}"], tmp_path)
    loggers = instantiate_loggers(cfg.logger)
    assert loggers and all(isinstance(lg, pl.loggers.Logger) for lg in loggers)


@pytest.mark.parametrize("option", config_group_options("experiment"))
def test_experiment_configs_compose(option: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"experiment={option}"], tmp_path)
    assert cfg.task_name and cfg.data._target_ and cfg.model.net._target_


@pytest.mark.parametrize("option", config_group_options("debug"))
def test_debug_configs_compose(option: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"debug={option}"], tmp_path)
    assert cfg.trainer.accelerator == "cpu" and cfg.logger is None


def test_eval_config_composes(tmp_path: Path) -> None:
    cfg = compose_config("eval", ["ckpt_path=some.ckpt"], tmp_path)
    assert cfg.ckpt_path == "some.ckpt" and cfg.task_name == "eval"


@pytest.mark.parametrize("option", config_group_options("hparams_search"))
def test_hparams_search_configs_compose(option: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"hparams_search={option}"], tmp_path)
    assert cfg.optimized_metric.startswith("val/")  # never a test metric


@pytest.mark.parametrize("option", config_group_options("cross_pose"))
def test_cross_pose_directions_are_disjoint(option: str, tmp_path: Path) -> None:
    cfg = compose_config("train", ["experiment=kdef_cross_pose", f"cross_pose={option}"], tmp_path)
    assert not set(cfg.data.train_angles) & set(cfg.data.test_angles)
    assert cfg.data.protocol == "cross_pose" and cfg.direction == option


@pytest.mark.parametrize("launcher", ["slurm", "slurm_cpu", "local"])
def test_launcher_configs_compose(launcher: str) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert "submitit" in cfg.hydra.launcher._target_.lower()
    assert cfg.hydra.launcher.timeout_min > 0
