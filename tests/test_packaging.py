"""The package works installed from its wheel, outside the source checkout, as the container images run it.

The wheel is built from exactly the files the container recipes copy (``containers/lanmsff.def``'s
``%files``, the same as the Dockerfile's ``COPY`` lines) and installed by ``scripts/install.sh`` (the
script both recipes call) into a new virtual environment; its console scripts then run from a folder that
is not the checkout: the demo for one batch (``trainer.fast_dev_run=true``) and the comparison of its output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


CONTAINERS = ROOT / "containers"


def apptainer_files() -> list[str]:
    """The sources of ``containers/lanmsff.def``'s ``%files`` section (paths in the repository)."""
    lines = (CONTAINERS / "lanmsff.def").read_text().split("%files", 1)[1].split("\n%", 1)[0].splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.strip().startswith("#")]


def docker_files() -> list[str]:
    """The sources of the Dockerfile's ``COPY`` lines."""
    lines = (CONTAINERS / "Dockerfile").read_text().splitlines()
    return [source for line in lines if line.startswith("COPY ") for source in line.split()[1:-1]]


def image_context(dest: Path) -> Path:
    """A folder with exactly what the container recipes copy from the repository."""
    for name in apptainer_files():
        source, target = ROOT / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, target)
    return dest


def build_wheel(out: Path) -> Path:
    """The wheel of the package, built from the container recipes' files only."""
    context = image_context(out / "context")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(context)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("lanmsff-*.whl")
    return wheel


def test_both_container_recipes_copy_the_same_files_and_run_the_install_script() -> None:
    assert (
        sorted(apptainer_files())
        == sorted(docker_files())
        == sorted(["pyproject.toml", "README.md", "src", "scripts/install.sh"])
    )
    for recipe in ("Dockerfile", "lanmsff.def"):
        assert "scripts/install.sh /opt/lanmsff /opt/lanmsff-src" in (CONTAINERS / recipe).read_text()


def test_the_wheel_ships_the_configs_and_the_console_scripts(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    configs = {str(p.relative_to(ROOT / "src")) for p in (ROOT / "src" / "lanmsff" / "conf").rglob("*.yaml")}
    assert configs and configs <= names, sorted(configs - names)[:5]
    assert "hydra_plugins/lanmsff_user_config/user_config.py" in names
    for script in ("train", "eval", "predict", "export", "compare", "data", "synthetic"):
        assert f"lanmsff-{script} = " in entry_points
    assert not any(n.startswith(("tests/", "benchmarks/", "docs/")) for n in names)


@pytest.mark.slow
def test_the_installed_wheel_trains_and_compares_outside_the_checkout(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist")
    venv = tmp_path / "venv"
    install = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install.sh"), str(venv), str(wheel), ""],
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    bin_dir = venv / "bin"
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import lanmsff; print(lanmsff.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), "the wheel's package, not the checkout's"

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LANMSFF_CONF", "VIRTUAL_ENV")}
    env.update(WANDB_MODE="offline", LANMSFF_CONFIG_DIR=str(tmp_path / "no_user_config"))
    train = subprocess.run(
        [str(bin_dir / "lanmsff-train"), "experiment=demo", "trainer.fast_dev_run=true"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    (summary_file,) = (work / "logs" / "demo" / "runs").glob("*/summary.json")
    summary = json.loads(summary_file.read_text())
    assert summary["status"] == "ok" and "test/acc" in summary["metrics"]
    # the demo's next steps name the console scripts, not a checkout's .venv/bin/python predict.py
    assert "lanmsff-predict ckpt_path=" in train.stdout and ".venv/bin/python" not in train.stdout

    other = tmp_path / "another"
    other.mkdir()
    compare = subprocess.run(
        [str(bin_dir / "lanmsff-compare"), str(work / "logs" / "demo"), "--out", "report"],
        cwd=other,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert compare.returncode == 0, compare.stderr[-3000:]
    assert (other / "report" / "report.html").is_file() and (other / "report" / "runs.csv").is_file()
    assert len((other / "report" / "runs.csv").read_text().strip().splitlines()) == 2, "one run, one row"
