"""Shared fixtures: small generated KDEF-layout trees and Hydra config composition."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lanmsff.runtime.process import prepare_process

# Under pytest-xdist (make test runs two workers on two cores) each worker, and every command a test
# starts, uses one thread: two workers of two threads each would fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
prepare_process()  # as the entry points do, before torch is imported: a short OpenMP spin

import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

from lanmsff.utils.config import CONF_DIR  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONF = CONF_DIR

# The smallest training run of the suite: 4 synthetic people (2 folds), a narrow LANMSFF, one epoch, CSV logs only.
# Later overrides win, so tests append what they change (e.g. "data.identities=4").
TINY_TRAIN = (
    "data=kdef_synthetic",
    "data.identities=4",  # 2 test people, 1 validation and 1 training person (person-independent)
    "data.num_folds=2",
    "model.net.widths=[12,12,12,12]",
    "trainer.max_epochs=1",
    "logger=csv",
)

os.environ.setdefault("LANMSFF_QUIET", "1")
os.environ.setdefault("WANDB_MODE", "offline")
# the tester's own per-machine settings (~/.config/lanmsff/local/default.yaml) must not reach the tests
os.environ["LANMSFF_CONFIG_DIR"] = str(Path(__file__).resolve().parent / "fixtures" / "no_user_config")


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic KDEF tree with 4 people (280 images), shared by the whole session."""
    from lanmsff.data.synthetic import generate

    out = tmp_path_factory.mktemp("kdef_tiny")
    generate(out, identities=4, seed=0, workers=2)
    return out


def compose_config(name: str, overrides: list[str], tmp_path: Path) -> DictConfig:
    """Compose a config of ``lanmsff/conf/`` as the CLI would, with every path inside ``tmp_path``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides, return_hydra_config=False)
    with open_dict(cfg):
        cfg.paths.root_dir = str(tmp_path)
        cfg.paths.data_dir = str(tmp_path / "data")
        cfg.paths.log_dir = str(tmp_path / "logs")
        cfg.paths.cache_dir = str(tmp_path / "cache")
        cfg.paths.output_dir = str(tmp_path / "run")
    return cfg


def run_script(
    script: str, *args: str, cwd: Path, timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``train.py`` / ``eval.py`` as a user would, with logs under ``cwd``."""
    env = {**os.environ, "LANMSFF_ROOT": str(cwd), "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The best checkpoint of a small LANMSFF trained one epoch by ``train.py`` (shared by the session)."""
    workdir = tmp_path_factory.mktemp("trained_ckpt")
    result = run_script("train.py", *TINY_TRAIN, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    [ckpt] = (workdir / "logs" / "train" / "runs").glob("*/checkpoints/epoch_*.ckpt")
    return ckpt


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The SLURM tests first, then files with slow tests (each in its own order), so that under pytest-xdist
    the longest files start early instead of ending the run alone."""
    weight = {}
    for item in items:
        rank = 0 if item.get_closest_marker("slurm") else 1 if item.get_closest_marker("slow") else 2
        weight[item.path] = min(weight.get(item.path, 2), rank)
    items.sort(key=lambda item: weight[item.path])  # a stable sort keeps each file's order
