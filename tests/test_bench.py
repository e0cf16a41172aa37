"""``python -m lanmsff.bench``: it runs end to end and records what it claims to measure (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lanmsff.runtime.hardware import NATIVE_BF16_ENV, cpu_has_native_bf16

ROOT = Path(__file__).resolve().parents[1]

SAFE_BF16 = "channels-last + bf16, dilated as space-to-batch, BatchNorm on aligned rows"


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
    baseline = throughput["eager fp32 NCHW"]["images_per_s"]
    for row in throughput.values():  # every ratio is against the same run's eager baseline
        assert row["ratio"] == pytest.approx(row["images_per_s"] / baseline, abs=2e-3)
    assert all(row["images_per_s"] > 0 for row in throughput.values())
    assert set(lanmsff["inference"]["latency_ms"]) == {"eager fp32 NCHW", "optimize(fp32)", "optimize(auto)"}
    assert lanmsff["training"]["eager fp32 NCHW"]["conv_grad_audit"]["ok"]
    assert all(row["images_per_s"] > 0 for row in results["data_path"].values())
    assert set(results["targets"]) == {"inference_fp32", "inference_auto_bf16", "training_safe"}
    assert results["machine"]["cores"] >= 1


# The quick bench as this CPU runs it (bf16 where it is native), and as an AVX2-only CPU without native
# bf16 runs it (LANMSFF_NATIVE_BF16=0 with torch's and oneDNN's kernels limited to AVX2): both paths are
# exercised on every machine kind, and the limits are recorded and named.
AVX2_STAND_IN = {NATIVE_BF16_ENV: "0", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


@pytest.mark.slow
@pytest.mark.parametrize("native", ["detected", "0"])
def test_quick_bench_records_every_measurement(native: str, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    env = {} if native == "detected" else AVX2_STAND_IN
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
        assert "bf16" not in results.get("skipped", {})
    else:
        assert auto == "optimize(auto=fp32)"
        assert not any("bf16" in label for label in training)  # nothing emulated was timed
        assert "bf16_loss_check" not in results and "bf16_agreement" not in results
        assert "no native bf16" in results["skipped"]["bf16"]
        assert "bf16 skipped" in result.stderr + result.stdout
    if native == "0":
        limits = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
        assert results["machine"]["isa_limits"] == limits and results["machine"]["capability"] == "AVX2"
        assert "kernels limited by ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2" in result.stdout
    elif not any(name in os.environ for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")):
        assert "kernels limited by" not in result.stdout
    _check_versus(results, result.stdout + result.stderr)


def _check_versus(results: dict, output: str) -> None:
    """--quick measures our side of the comparison with TF and says that the peer was skipped."""
    versus = results["versus_tf"]
    assert results["skipped"]["peer"].startswith("peer skipped: --quick") and "peer skipped: --quick" in output
    rows = versus["rows"]
    assert {"ours: optimize(precision='auto')", "ours: optimize(precision='fp32')"} <= set(rows)
    assert sum(label.startswith("ours: training default") for label in rows) == 2  # --batch and 32
    assert rows["ours: demo's Lightning loop, batch 32"]["images_per_s"] > 0
    assert versus["lightning"]["torch_threads"] == [versus["threads"]["torch_intra_op"]]
    assert versus["allocator_tuned"] is True and "ratios" not in versus


def test_unknown_model_is_a_user_error(tmp_path: Path) -> None:
    result = _bench("--models", "lanmsff,vgg16", "--out", str(tmp_path / "r.json"), cwd=tmp_path)
    assert result.returncode == 2
    assert "--models: unknown vgg16; choices: lanmsff," in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r.json").exists()


FAKE_PEER = """#!{python}
import json, sys
print(json.dumps({{"ok": True, "ready": True, "tensorflow": "fake", "keras": "fake", "intra_op_threads": 2,
                  "inter_op_threads": 2}}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "quit":
        break
    seconds = 0.5 if request["kind"] == "inference" else 2.0
    print(json.dumps({{"ok": True, "times_s": [seconds] * 3, "median_s": seconds, "cpu_per_wall": 2.0,
                      "images_per_s": request["batch"] / seconds}}), flush=True)
"""


def _fake_peer(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "peer_python"
    path.write_text(text.format(python=sys.executable))
    path.chmod(0o755)
    return path


@pytest.fixture
def one_thread():
    """One torch thread (a shared machine's busy cores make two spinning threads slow; the numbers are not judged)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def test_versus_puts_the_peer_next_to_ours(tmp_path: Path, one_thread: None) -> None:
    """The interleaved comparison with a stand-in for the TF process: rows, ratios ours / TF, thread counts."""
    from lanmsff.bench.models import Settings
    from lanmsff.bench.peer import upper_median
    from lanmsff.bench.versus import TF_INFERENCE, run_versus

    s = Settings(batch=4, min_run_time=0.05, train_run_time=0.05, quick=True)
    peer = _fake_peer(tmp_path, FAKE_PEER)
    cpu = torch.device("cpu")
    result = run_versus(peer, s, device=cpu, rounds=2, lightning=None, log=tmp_path / "peer.log", train_batches=(4, 2))
    rows, ratios = result["rows"], result["ratios"]
    assert rows[TF_INFERENCE]["images_per_s"] == 8.0 and len(rows[TF_INFERENCE]["round_medians_s"]) == 2
    assert rows["TF GradientTape step, batch 2"]["images_per_s"] == 1.0
    label = "ours: optimize(precision='fp32')"
    assert ratios[label] == round(rows[label]["images_per_s"] / 8.0, 3)
    per_round = [tf / ours for ours, tf in zip(rows[label]["round_medians_s"], rows[TF_INFERENCE]["round_medians_s"])]
    paired = {"median": upper_median(per_round), "min": min(per_round), "max": max(per_round)}
    assert ratios["paired"][label] == {k: round(v, 3) for k, v in paired.items()}  # ours / TF in each round
    assert sum(key.startswith("ours: training default") for key in ratios) == 2
    assert len(result["load_1min_per_round"]) == 2
    threads = result["threads"]
    assert threads["torch_intra_op"] == 1
    assert (threads["tf_intra_op"], threads["tf_inter_op"]) == (2, 2)


def test_a_broken_peer_is_reported(tmp_path: Path) -> None:
    from lanmsff.bench.peer import PeerError, PeerProcess, find_peer_python

    broken = _fake_peer(tmp_path, "#!{python}\nimport sys\nprint('no tensorflow here', file=sys.stderr)\nsys.exit(1)\n")
    with (
        pytest.raises(PeerError, match="no tensorflow here"),
        PeerProcess(broken, threads=2, inter_op_threads=2, log=tmp_path / "peer.log"),
    ):
        pass
    assert find_peer_python(tmp_path / "missing") == (None, f"--peer-python {tmp_path / 'missing'} does not exist")


def test_time_calls_warms_up_then_times_each_call() -> None:
    from lanmsff.bench.peer import time_calls

    calls = []
    timing = time_calls(lambda: calls.append(1), 0.0, warmup=2, min_calls=5)
    assert len(calls) == 7 and len(timing["times_s"]) == 5 and timing["median_s"] >= 0


PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"


@pytest.mark.slow
@pytest.mark.skipif(not PEER_PYTHON.is_file(), reason="no .venv-peer (make bench-peer creates it)")
def test_the_tensorflow_peer_runs_standalone(tmp_path: Path) -> None:
    """The authors' Keras model (356,294 parameters) timed by the peer venv's TensorFlow, threads as asked."""
    args = ["--threads", "2", "--inter-op-threads", "1", "--batch", "4", "--train-batch", "4"]
    result = subprocess.run(
        [str(PEER_PYTHON), "-m", "lanmsff.bench.peer", *args, "--seconds", "0.1", "--train-seconds", "0.1"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["peer"]["trainable_params"] == 356_294
    assert (out["peer"]["intra_op_threads"], out["peer"]["inter_op_threads"]) == (2, 1)
    assert out["inference"]["tf.function, batch 4"]["images_per_s"] > 0
    assert out["training"]["tf.function, batch 4"]["images_per_s"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is there")
def test_device_cuda_without_cuda_is_a_user_error(tmp_path: Path) -> None:
    result = _bench("--device", "cuda", "--out", str(tmp_path / "r.json"), cwd=tmp_path)
    assert result.returncode == 2 and "--device cuda: no CUDA device" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r.json").exists()


def test_every_lever_can_be_named_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    from lanmsff.bench.levers import DEFAULT_LEVERS, LEVERS, main

    assert DEFAULT_LEVERS and not [name for name in LEVERS if "," in name]
    assert main(["--levers", "default,warp-drive"]) == 2
    assert f"error: --levers: unknown warp-drive; choices: {', '.join(LEVERS)}" in capsys.readouterr().err
