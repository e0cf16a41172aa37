"""``python -m lanmsff.bench``: it runs end to end and records what it claims to measure (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lanmsff.runtime.hardware import NATIVE_BF16_ENV, cpu_has_native_bf16

SAFE_BF16 = "channels-last + bf16, dilated wgrad NCHW"


def _bench(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lanmsff.bench", *args],
        cwd=cwd,
        env={**os.environ, "LANMSFF_ROOT": str(cwd), **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
    )


def _check_common(results: dict) -> None:
    lanmsff = results["models"]["lanmsff"]
    assert lanmsff["params"] == 356_294 and round(lanmsff["flops"] / 1e9, 2) == 0.60
    throughput = lanmsff["inference"]["throughput"]
    assert {"eager fp32 NCHW", "channels-last", "optimize(fp32)", "optimize(fp32, onnxruntime)"} <= set(throughput)
    assert any(label.startswith("optimize(auto=") for label in throughput)
    assert throughput["eager fp32 NCHW"]["ratio"] == 1.0
    assert all(row["images_per_s"] > 0 for row in throughput.values())
    assert set(lanmsff["inference"]["latency_ms"]) == {"eager fp32 NCHW", "optimize(fp32)", "optimize(auto)"}
    assert lanmsff["training"]["eager fp32 NCHW"]["conv_grad_audit"]["ok"]
    assert all(row["images_per_s"] > 0 for row in results["data_path"].values())
    assert set(results["targets"]) == {"inference_fp32", "inference_auto_bf16", "training_safe"}
    assert results["machine"]["cores"] >= 1


# The quick bench as this CPU runs it (bf16 where it is native), and as a CPU without native bf16 runs it
# (forced with LANMSFF_NATIVE_BF16=0): both paths are exercised on every machine kind.
@pytest.mark.slow
@pytest.mark.parametrize("native", ["detected", "0"])
def test_quick_bench_records_every_measurement(native: str, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    env = {} if native == "detected" else {NATIVE_BF16_ENV: native}
    result = _bench("--quick", "--out", str(out), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Results: {out}" in result.stdout
    results = json.loads(out.read_text())
    _check_common(results)
    expect_bf16 = cpu_has_native_bf16() if native == "detected" else False
    assert results["machine"]["native_bf16"] is expect_bf16
    training = results["models"]["lanmsff"]["training"]
    auto = next(label for label in results["models"]["lanmsff"]["inference"]["throughput"] if "auto=" in label)
    if expect_bf16:
        assert auto == "optimize(auto=bf16)"
        assert training[SAFE_BF16]["conv_grad_audit"]["ok"]  # the guard the training default uses is right
        assert results["bf16_loss_check"][SAFE_BF16]["finite"]
        assert results["bf16_agreement"]["heldout"]["images"] > 0
        assert "skipped" not in results
    else:
        assert auto == "optimize(auto=fp32)"
        assert not any("bf16" in label for label in training)  # nothing emulated was timed
        assert "bf16_loss_check" not in results and "bf16_agreement" not in results
        assert "no native bf16" in results["skipped"]["bf16"]
        assert "bf16 skipped" in result.stderr + result.stdout


def test_unknown_model_is_a_user_error(tmp_path: Path) -> None:
    result = _bench("--models", "lanmsff,vgg16", "--out", str(tmp_path / "r.json"), cwd=tmp_path)
    assert result.returncode == 2
    assert "--models: unknown vgg16; choices: lanmsff," in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r.json").exists()
