"""The commands before Hydra runs them: the short --help, the typed check of the command line, and the
per-machine settings read from the user's config folder (local/default.yaml)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra

from lanmsff.config_check import config_groups, help_text, override_problems, type_problem
from lanmsff.entrypoints import unknown_group_options
from lanmsff.utils.config import CONF_DIR, config_group_options

ROOT = Path(__file__).resolve().parents[1]
INTERNAL_PARTS = ("data/common", "model/hints", "model/timm")


def run_command(script: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], cwd=cwd, capture_output=True, text=True, env=env, check=False
    )


def test_help_lists_the_user_facing_groups_and_hides_the_internal_parts(tmp_path: Path) -> None:
    result = run_command("train.py", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("usage: lanmsff-train")
    for group in ("data", "model", "trainer", "logger", "experiment", "debug", "local"):
        assert f"\n  {group} " in out, group
    for option in config_group_options("experiment"):
        assert option in out
    for part in INTERNAL_PARTS:
        assert part not in out
    assert "hints" not in out and "common" not in out and "\n  hydra " not in out
    assert "Docs:" in out and "--hydra-help" in out and "trainer.fast_dev_run=true" in out
    assert not list(tmp_path.iterdir()), "--help must not start a run"


@pytest.mark.parametrize("name", ["train", "eval", "predict", "export"])
def test_every_command_has_a_short_help(name: str) -> None:
    text = help_text(name)
    assert text.startswith(f"usage: lanmsff-{name}")
    assert set(config_groups(name)) >= {"paths", "hydra", "local"}
    assert len(text.splitlines()) < 40


def test_a_wrong_type_is_refused_with_exit_2_before_any_data_is_read(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_kdef"
    result = run_command("train.py", "data=kdef", f"data.root={missing}", "trainer.max_epochs=abc", cwd=tmp_path)
    assert result.returncode == 2
    assert "error: trainer.max_epochs='abc': expected an integer" in result.stderr
    assert "Traceback" not in result.stderr and str(missing) not in result.stderr
    assert not (tmp_path / "logs").exists(), "nothing may start before the command line is right"


def test_an_unknown_key_is_refused_with_exit_2_and_the_nearest_key(tmp_path: Path) -> None:
    result = run_command("train.py", "trainer.max_epoch=5", cwd=tmp_path)
    assert result.returncode == 2
    assert "error: trainer.max_epoch: no such key" in result.stderr
    assert "did you mean trainer.max_epochs?" in result.stderr and "+trainer.max_epoch=" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_value_of_a_sweep_is_checked_before_any_job_starts(tmp_path: Path) -> None:
    result = run_command("train.py", "-m", "data.fold=0,1,x", cwd=tmp_path)
    assert result.returncode == 2
    assert "data.fold='x': expected an integer" in result.stderr
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer.devices=auto", "trainer.fast_dev_run=3", "trainer.precision=32", "trainer.max_epochs=null"],
        ["optim.optimizer.lr=1", "seed=7", "ckpt_path=last", "task_name=mine", "data.root=/data/KDEF"],
        ["+trainer.gradient_clip_val=1.0", "model=resnet18", "model.name=r18", "+trainer.limit_train_batches=0.5"],
        ["experiment=demo", "data.num_folds=2", "data.fold=0,1", "hydra/launcher=slurm", "hydra.launcher.mem_gb=8"],
        ["model.net.widths=[12,12,12,12]", "tags=[a,b]", "~calibrate", "debug=fdr"],
    ],
)
def test_valid_command_lines_pass_the_typed_check(overrides: list[str]) -> None:
    assert override_problems("train", overrides) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.batch_size=1.5"], "data.batch_size=1.5: expected an integer"),
        (["trainer.deterministic=[1]"], "trainer.deterministic=[1]: expected true or false or a string"),
        (["tags=x"], "tags='x': expected a list"),
        (["model.net.widths=12"], "model.net.widths=12: expected a list"),
        (["data.augment=none"], "data.augment='none': expected"),
        (["model=resnet18", "model.nope=1"], "model.nope: no such key"),
    ],
)
def test_wrong_command_lines_name_the_key(overrides: list[str], message: str) -> None:
    problems = override_problems("train", overrides)
    assert any(message in p for p in problems), problems


def test_the_kinds_a_key_takes() -> None:
    assert type_problem("trainer.max_epochs", 100, "abc")
    assert type_problem("trainer.max_epochs", 100, True), "a boolean is not an epoch count"
    assert type_problem("optim.optimizer.lr", 0.001, 1) is None, "an integer is a number"
    assert type_problem("data.root", "/x", 123) is None, "a path may look like a number"
    assert type_problem("trainer.devices", 1, "auto") is None
    assert type_problem("trainer.fast_dev_run", False, 5) is None
    assert type_problem("anything", None, [1, 2]) is None, "a null default takes anything"
    assert type_problem("seed", 42, "${oc.env:SEED}") is None, "interpolations are resolved later"


def _write_local(folder: Path) -> None:
    (folder / "local").mkdir(parents=True)
    shutil.copy(CONF_DIR / "local" / "example.yaml", folder / "local" / "default.yaml")


def _compose(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="lanmsff.conf", version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_local_settings_from_the_user_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANMSFF_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("USER", "alice")
    _write_local(tmp_path)
    cfg = _compose(["logger=wandb", "hydra/launcher=slurm", "experiment=demo"])
    assert cfg.paths.data_dir == "/scratch/alice/fer-data"
    assert cfg.logger.wandb.entity == "my-lab" and cfg.logger.wandb.project == "multiview-fer"
    assert cfg.hydra.launcher.partition == "gpu" and cfg.hydra.launcher.account == "fer-project"
    assert cfg.data.root == "/scratch/alice/fer-data/kdef_synthetic_demo", "groups read the local data folder"
    cfg = _compose(["paths.data_dir=/elsewhere", "wandb.entity=other"])
    assert cfg.paths.data_dir == "/elsewhere" and cfg.wandb.entity == "other", "the command line wins"


def test_without_local_settings_the_environment_is_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANMSFF_CONFIG_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("SLURM_PARTITION", "cpu")
    monkeypatch.delenv("WANDB_ENTITY", raising=False)
    cfg = _compose(["logger=wandb", "hydra/launcher=slurm"])
    assert cfg.hydra.launcher.partition == "cpu" and cfg.logger.wandb.entity is None
    assert cfg.logger.wandb.project == "lanmsff"


def test_the_users_own_experiment_is_an_option_of_its_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANMSFF_CONFIG_DIR", str(tmp_path))
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "my_study.yaml").write_text("# @package _global_\ntask_name: my_study\nseed: 3\n")
    assert "my_study" in config_group_options("experiment")
    assert unknown_group_options(["experiment=my_study"]) == []
    cfg = _compose(["experiment=my_study"])
    assert cfg.task_name == "my_study" and cfg.seed == 3


def test_local_settings_reach_a_real_command(tmp_path: Path) -> None:
    _write_local(tmp_path / "config")
    env = {**os.environ, "LANMSFF_CONFIG_DIR": str(tmp_path / "config"), "USER": "bob"}
    result = run_command("train.py", "--cfg", "job", "--resolve", "logger=wandb", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "data_dir: /scratch/bob/fer-data" in result.stdout and "entity: my-lab" in result.stdout


def test_a_logger_whose_extra_is_missing_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from omegaconf import OmegaConf

    from lanmsff.errors import UserError
    from lanmsff.utils.config import instantiate_loggers

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("tensorboard") else real_find_spec(name, *a),
    )
    group = OmegaConf.create(
        {"tensorboard": {"_target_": "pytorch_lightning.loggers.TensorBoardLogger", "save_dir": "."}}
    )
    with pytest.raises(UserError, match=r"pip install 'lanmsff\[tensorboard\]'"):
        instantiate_loggers(group)


@pytest.mark.parametrize("name", ["train", "eval", "predict", "export"])
def test_the_overrides_the_help_shows_are_valid(name: str) -> None:
    from lanmsff.config_check import COMMON_OVERRIDES

    for shown, _ in COMMON_OVERRIDES[name]:
        for alternative in shown.split(" | "):
            args = [arg for arg in alternative.replace("<", "").replace(">", "").split() if arg != "-m"]
            assert override_problems(name, args) == [], alternative


def test_lanmsff_conf_replaces_the_package_configs(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf, ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
    train_yaml = conf / "train.yaml"
    train_yaml.write_text(train_yaml.read_text().replace("seed: 42", "seed: 1234"))
    env = {**os.environ, "LANMSFF_CONF": str(conf)}
    result = run_command("train.py", "--cfg", "job", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "\nseed: 1234\n" in result.stdout
    result = run_command("train.py", "trainer.max_epochs=abc", cwd=tmp_path, env=env)
    assert result.returncode == 2 and "trainer.max_epochs" in result.stderr
