"""The GPU path (``scripts/gpu_check.sh`` runs every test marked gpu, these among them); each skips without CUDA.

The marker ``gpu`` is applied once ``pyproject.toml`` registers it (``--strict-markers``); until then
the tests are unmarked but skip the same way.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import ROOT, TINY_TRAIN, run_script


def needs_gpu(test):
    """Mark a test ``gpu`` (scripts/gpu_check.sh runs them) and skip it without CUDA."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")(test))


CUDA = torch.device("cuda")
GPU_TRAIN = (*TINY_TRAIN, "trainer=gpu")


def _summary(workdir: Path) -> dict:
    [path] = (workdir / "logs").glob("*/runs/*/summary.json")
    return json.loads(path.read_text())


@needs_gpu
@pytest.mark.slow
def test_bf16_mixed_training_on_gpu_has_finite_loss(tmp_path: Path) -> None:
    result = run_script("train.py", *GPU_TRAIN, "trainer.precision=bf16-mixed", "trainer.max_epochs=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = _summary(tmp_path)["metrics"]
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["val/loss"])


@needs_gpu
def test_precision_auto_is_reduced_on_gpu() -> None:
    from lanmsff.runtime.precision import trainer_precision

    expected = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    assert trainer_precision("auto", "gpu") == expected


@needs_gpu
def test_augment_on_device_runs_on_cuda() -> None:
    from lanmsff.data.datamodule import DeviceLoader, FaceDataset
    from lanmsff.data.device_augment import augment_batch

    images = torch.randint(0, 256, (40, 64, 64), dtype=torch.uint8).numpy()
    zeros = torch.zeros(40, dtype=torch.int64).numpy()
    batch, labels, _ = next(iter(DeviceLoader(FaceDataset(images, zeros, zeros), 16, device=CUDA)))
    assert batch.device.type == "cuda" and labels.device.type == "cuda" and batch.shape == (16, 1, 64, 64)
    out = augment_batch(batch, generator=torch.Generator(CUDA).manual_seed(0))
    assert out.device.type == "cuda" and out.shape == batch.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    again = augment_batch(batch, generator=torch.Generator(CUDA).manual_seed(0))
    torch.testing.assert_close(out, again)  # seeded: the same draws on the device


@needs_gpu
def test_augment_on_device_matches_the_cpu_warp() -> None:
    """The same affine matrices warp a batch alike on the GPU and on the CPU."""
    import torch.nn.functional as F

    from lanmsff.data.device_augment import paper_affine

    theta, _ = paper_affine(16, generator=torch.Generator().manual_seed(0))
    images = torch.rand(16, 1, 64, 64, generator=torch.Generator().manual_seed(1))

    def warp(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        grid = F.affine_grid(t, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    torch.testing.assert_close(warp(images.to(CUDA), theta.to(CUDA)).cpu(), warp(images, theta), atol=1e-5, rtol=0)


@needs_gpu
@pytest.mark.slow
def test_training_with_augment_on_device_on_gpu(tmp_path: Path) -> None:
    result = run_script("train.py", *GPU_TRAIN, "data.augment_on_device=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert math.isfinite(_summary(tmp_path)["metrics"]["train/loss"])


@pytest.fixture
def no_tf32():
    """Plain fp32 on the GPU (TF32 convolutions and matmuls off) for comparisons at fp32 tolerance."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _model_and_faces() -> tuple[torch.nn.Module, torch.Tensor]:
    from lanmsff.models import LANMSFF

    torch.manual_seed(0)
    model = LANMSFF(num_classes=7).eval()
    images = torch.rand(24, 1, 64, 64, generator=torch.Generator().manual_seed(2))
    return model, images


@needs_gpu
def test_optimize_fp32_on_cuda_agrees_with_the_cpu_model(no_tf32: None) -> None:
    from lanmsff.inference import optimize

    model, images = _model_and_faces()
    with torch.no_grad():
        reference = model(images)
        fast = optimize(model.to(CUDA), precision="fp32")(images.to(CUDA)).cpu()
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast, reference, atol=1e-4, rtol=1e-4)


@needs_gpu
def test_optimize_auto_on_cuda_is_close_to_fp32() -> None:
    from lanmsff.inference import optimize

    model, images = _model_and_faces()
    with torch.no_grad():
        fp32 = model(images).softmax(1)
        auto = optimize(model.to(CUDA), precision="auto")
        assert auto.precision in ("bf16", "fp16")
        probs = auto(images.to(CUDA)).float().cpu().softmax(1)
    assert float((probs - fp32).abs().max()) < 0.05


@needs_gpu
@pytest.mark.slow
def test_ddp_with_one_gpu(tmp_path: Path) -> None:
    result = run_script("train.py", *TINY_TRAIN, "trainer=ddp", "trainer.devices=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = _summary(tmp_path)
    assert summary["world_size"] == 1 and math.isfinite(summary["metrics"]["test/acc"])


@needs_gpu
def test_bench_measures_the_gpu(tmp_path: Path) -> None:
    from .helpers.bench import run_bench

    out = tmp_path / "gpu.json"
    result = run_bench("--device", "cuda", "--quick", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    gpu = json.loads(out.read_text())["gpu"]
    assert all(row["images_per_s"] > 0 for part in ("inference", "training") for row in gpu[part].values())
    assert gpu["lightning"] and all(run["steps"] > 0 for run in gpu["lightning"].values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is there: the script runs for real")
def test_gpu_check_exits_cleanly_without_cuda(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "out")],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "gpu_check: no CUDA device" in result.stdout
    assert not (tmp_path / "out").exists()  # nothing was run


def test_gpu_check_report_reads_the_steps(tmp_path: Path) -> None:
    """The script's report (``python -m benchmarks.gpu OUT``) from fake step records; no GPU needed."""
    from benchmarks.gpu import report

    (tmp_path / "steps.tsv").write_text("tests\t0\t90\ndemo\t0\t120\nbench\t1\t60\n")
    (tmp_path / "tests.xml").write_text(
        '<testsuites><testsuite tests="9" failures="1" errors="0" skipped="2"></testsuite></testsuites>'
    )
    run = tmp_path / "demo" / "logs" / "demo" / "runs" / "t0"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"status": "ok", "metrics": {"test/acc": 0.8}}))
    result = report(tmp_path)
    assert result["steps"]["demo"] == {"exit": 0, "seconds": 120} and not result["ok"]
    assert result["tests"]["passed"] == 6 and result["demo"]["test/acc"] == 0.8 and result["bench"] is None
    assert json.loads((tmp_path / "gpu_check.json").read_text())["ok"] is False
