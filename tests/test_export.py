"""ONNX export: the file runs in ONNX Runtime with the PyTorch logits, at any batch size; bad input exits 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from lanmsff.checkpoints import load_model
from lanmsff.data.samples import sample_faces
from lanmsff.models import LANMSFF
from lanmsff.onnx_export import ATOL, export_model_onnx
from lanmsff.tasks.export import export_onnx

from .conftest import ROOT, run_script


def test_export_command_writes_a_checked_onnx_file(trained_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    result = run_script("export.py", f"ckpt_path={trained_checkpoint}", f"output={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Wrote {out} (ONNX opset 17" in result.stdout
    assert "Check passed: tolerance 0.0001 on the logits" in result.stdout
    for kind in ("random", "faces"):
        for batch in (1, 17):
            assert f"check {kind:6s} batch {batch:>3d}: max |onnxruntime - torch|" in result.stdout

    net, _, _, _ = load_model(trained_checkpoint)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 5, 33):  # the batch axis is dynamic
        x = sample_faces(batch, seed=2)
        got = session.run(["logits"], {"image": x.numpy()})[0]
        with torch.no_grad():
            expected = net(x).numpy()
        assert got.shape == (batch, 7)
        assert np.abs(got - expected).max() <= ATOL
    assert not list(tmp_path.glob(".model.onnx.*"))  # no temporary file left behind


def test_reference_lanmsff_exports_within_tolerance(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = LANMSFF().eval()
    path = tmp_path / "lanmsff.onnx"
    assert export_model_onnx(net, path) in ("torchscript", "dynamo")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(17, 1, 64, 64)
    with torch.no_grad():
        expected = net(x).numpy()
    assert np.abs(session.run(None, {"image": x.numpy()})[0] - expected).max() <= ATOL


def test_default_output_is_next_to_the_checkpoint(trained_checkpoint: Path, tmp_path: Path) -> None:
    copy = tmp_path / "best.ckpt"
    copy.write_bytes(trained_checkpoint.read_bytes())
    result = export_onnx(copy)
    assert result.ok and result.checked and Path(result.path) == tmp_path / "best.onnx"
    assert set(result.max_abs_diff) == {"random/b1", "faces/b1", "random/b17", "faces/b17"}


# An ONNX file that does not reproduce the PyTorch logits is reported, and the command exits 1 (not 0, not 2).
def test_a_failed_check_exits_1(trained_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    code = (
        "import runpy, sys\n"
        "import lanmsff.tasks.export as task\n"
        "task.check_onnx = lambda *a, **k: {'random/b1': 0.5, 'faces/b1': 0.0}  # ONNX Runtime off by 0.5\n"
        f"sys.argv = ['export.py', 'ckpt_path={trained_checkpoint}', 'output={out}']\n"
        f"runpy.run_path({str(ROOT / 'export.py')!r}, run_name='__main__')\n"
    )
    env = {**os.environ, "LANMSFF_ROOT": str(tmp_path), "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "check random batch   1: max |onnxruntime - torch| = 5.00e-01  FAILED" in result.stdout
    assert "Check FAILED: tolerance 0.0001 on the logits" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["format=tflite"], "format='tflite' is not valid; allowed values: 'onnx'"),
        (["ckpt_path=missing.ckpt"], "ckpt_path=missing.ckpt: no such file"),
        (["opset=7"], "opset=7 must be an integer of at least 11"),
    ],
)
def test_bad_export_settings_exit_2(trained_checkpoint: Path, tmp_path: Path, args: list[str], message: str) -> None:
    result = run_script("export.py", f"ckpt_path={trained_checkpoint}", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr


def test_export_of_a_file_that_is_not_a_checkpoint_exits_2(tmp_path: Path) -> None:
    bogus = tmp_path / "weights.ckpt"
    bogus.write_text("not a checkpoint")
    result = run_script("export.py", f"ckpt_path={bogus}", cwd=tmp_path)
    assert result.returncode == 2
    assert "not a loadable PyTorch checkpoint" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.onnx"))


# The file a user ships does not depend on the CPU that exported it: a trained checkpoint loads as the plain
# network (no CPU training kernel) and exports with the same operators as a plain LANMSFF of its widths,
# whatever the CPU-feature probe says.
@pytest.mark.parametrize("avx512", [True, False])
def test_a_trained_checkpoint_exports_the_plain_network(
    trained_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, avx512: bool
) -> None:
    from collections import Counter

    import onnx

    from lanmsff.training import cpu_kernels
    from lanmsff.training.cpu_kernels import dilated_conv

    monkeypatch.setattr(dilated_conv, "cpu_runs_avx512", lambda: avx512)
    net, _, _, config = load_model(trained_checkpoint)
    assert not [type(m).__name__ for m in net.modules() if type(m) in cpu_kernels.PLAIN_CLASS]
    plain = LANMSFF(widths=tuple(config["model"]["net"]["widths"])).eval()
    plain.load_state_dict(net.state_dict())  # the same weights (equal initializers are shared in the graph)
    operators = {}
    for name, model in (("trained", net), ("plain", plain)):
        path = tmp_path / f"{name}.onnx"
        export_model_onnx(model, path)
        operators[name] = Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    assert operators["trained"] == operators["plain"]
    assert operators["trained"]["BatchNormalization"] == 0  # folded, as for the plain network
