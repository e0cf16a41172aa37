"""Export a trained network to ONNX and check the file against PyTorch (``python export.py``).

    python export.py ckpt_path=<run>/checkpoints/<file>.ckpt [output=<file>.onnx] [opset=17]

The ONNX graph takes ``image`` ``(batch, C, S, S)`` float32 in [0, 1] (the batch axis is dynamic,
the image size is that of the checkpoint) and returns ``logits`` ``(batch, num_classes)``. It is
written with torch's TorchScript-based exporter (the dynamo exporter is tried only if that fails)
to a temporary file that is renamed into place, so a failed export never leaves a partial file.

The check runs the file with ONNX Runtime on uniform noise and on synthetic faces
(:func:`lanmsff.inference.sample_faces`), each at batch sizes 1 and 17, and compares the logits
with the PyTorch model in fp32: the largest absolute difference must be at most ``1e-4``.
LANMSFF's MassAtt spatial path (TensorFlow-'same' asymmetric ``F.pad`` and the cropped
``ConvTranspose2d``) exports as ``Pad`` and ``Slice`` with constants for the fixed image size and
shape arithmetic for the batch, which this check covers.

Exit status of ``export.py``: 0 when exported and checked, 1 when the check fails, 2 for a user
error (missing or foreign checkpoint, unknown format) with a one-line message.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from lanmsff.errors import ConfigError, UserError, check_choice

FORMATS = ("onnx",)
ATOL = 1e-4
CHECK_BATCH_SIZES = (1, 17)
EXIT_CHECK_FAILED = 1
INPUT_NAME, OUTPUT_NAME = "image", "logits"


@dataclass
class ExportResult:
    """What :func:`export_onnx` did: the file, the exporter used and the check of the file."""

    path: str
    exporter: str
    opset: int
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    atol: float = ATOL
    checked: bool = False

    @property
    def ok(self) -> bool:
        """True when the check ran and every difference is within ``atol`` (or no check was asked)."""
        return not self.checked or all(d <= self.atol for d in self.max_abs_diff.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Hide the exporters' deprecation and tracer warnings (the check below is what counts)."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, UserWarning, torch.jit.TracerWarning):
            warnings.simplefilter("ignore", category)
        yield


def input_geometry(net: nn.Module, image_size: int | None = None) -> tuple[int, int]:
    """``(in_channels, image_size)`` of a network: its attributes, else its first convolution (and 64)."""
    channels = getattr(net, "in_channels", None)
    if channels is None:
        first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
        channels = first.in_channels if first is not None else 1
    return int(channels), int(image_size or getattr(net, "image_size", 64))


def check_opset(opset: Any) -> None:
    """Raise :class:`ConfigError` unless ``opset`` is an integer ONNX opset the exporters can target."""
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 11:
        raise ConfigError(f"opset={opset!r} must be an integer of at least 11 (17 recommended)")


def _export_torchscript(net: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    buffer = io.BytesIO()
    torch.onnx.export(
        net,
        (example,),
        buffer,
        dynamo=False,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        do_constant_folding=True,
    )
    path.write_bytes(buffer.getvalue())


def _export_dynamo(net: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        net,
        (example,),
        dynamo=True,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: batch},),
    )
    program.save(str(path))


def export_model_onnx(
    net: nn.Module, path: str | Path, *, in_channels: int = 1, image_size: int = 64, opset: int = 17
) -> str:
    """Write ``net`` (fp32, eval mode; the caller's module is not changed) as ONNX to ``path``.

    Returns the exporter used: ``torchscript`` or, when that one fails, ``dynamo``. The file is
    written to a temporary name in the same folder and renamed into place.
    """
    check_opset(opset)
    net = copy.deepcopy(net).float().eval()
    example = torch.rand(2, in_channels, image_size, image_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _quiet_export():
            try:
                _export_torchscript(net, example, tmp, opset)
                exporter = "torchscript"
            except Exception as classic_error:
                try:
                    _export_dynamo(net, example, tmp, opset)
                except Exception as dynamo_error:
                    raise RuntimeError(
                        "ONNX export failed with both exporters: "
                        f"torchscript ({classic_error}); dynamo ({dynamo_error})"
                    ) from dynamo_error
                exporter = "dynamo"
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return exporter


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise UserError(
            "the ONNX check needs onnxruntime (and onnx): pip install -e '.[export]' (or: pip install onnx onnxruntime)"
        ) from None
    return onnxruntime


def check_inputs(in_channels: int, image_size: int, batch_sizes: tuple[int, ...] = CHECK_BATCH_SIZES) -> dict:
    """Inputs of the check: ``{"random/b1": tensor, "faces/b1": tensor, ...}``."""
    from lanmsff.inference import sample_faces

    generator = torch.Generator().manual_seed(0)
    faces = sample_faces(max(batch_sizes), image_size, in_channels=in_channels)
    inputs = {}
    for batch in batch_sizes:
        inputs[f"random/b{batch}"] = torch.rand(batch, in_channels, image_size, image_size, generator=generator)
        inputs[f"faces/b{batch}"] = faces[:batch]
    return inputs


def check_onnx(
    path: str | Path,
    net: nn.Module,
    *,
    in_channels: int = 1,
    image_size: int = 64,
    batch_sizes: tuple[int, ...] = CHECK_BATCH_SIZES,
) -> dict[str, float]:
    """Largest absolute logit difference between ONNX Runtime and ``net`` in fp32, per input kind and batch."""
    ort = _onnxruntime()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    net = copy.deepcopy(net).float().eval()
    diffs = {}
    for name, x in check_inputs(in_channels, image_size, batch_sizes).items():
        with torch.no_grad():
            expected = net(x).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        if got.shape != expected.shape:
            diffs[name] = float("inf")
            continue
        diffs[name] = float(abs(got - expected).max())
    return diffs


def default_output(ckpt_path: str | Path, fmt: str = "onnx") -> Path:
    """``<checkpoint folder>/<checkpoint stem>.<fmt>``."""
    ckpt_path = Path(ckpt_path).expanduser()
    return ckpt_path.with_name(f"{ckpt_path.stem}.{fmt}")


def export_onnx(
    ckpt_path: str | Path, output: str | Path | None = None, *, opset: int = 17, check: bool = True
) -> ExportResult:
    """Export the network of a training checkpoint to ONNX and (by default) check it with ONNX Runtime.

    Args:
        ckpt_path: a checkpoint written by ``train.py``.
        output: the ``.onnx`` file (default: next to the checkpoint, ``<ckpt stem>.onnx``).
        opset: ONNX opset version.
        check: compare ONNX Runtime with PyTorch (see the module docstring); needs onnxruntime.

    Raises:
        UserError: the checkpoint is missing or not a lanmsff checkpoint, or onnxruntime is missing.
    """
    from lanmsff.inference import load_model

    if check:
        _onnxruntime()  # fail before the work when the check cannot run
    net, _, image_size, _ = load_model(ckpt_path)
    in_channels, image_size = input_geometry(net, image_size)
    path = Path(output).expanduser() if output else default_output(ckpt_path)
    exporter = export_model_onnx(net, path, in_channels=in_channels, image_size=image_size, opset=opset)
    result = ExportResult(str(path), exporter, opset)
    if check:
        result.max_abs_diff = check_onnx(path, net, in_channels=in_channels, image_size=image_size)
        result.checked = True
    return result


def print_result(result: ExportResult) -> None:
    """The file and the check as the command line shows them."""
    print(f"Wrote {result.path} (ONNX opset {result.opset}, {result.exporter} exporter, dynamic batch axis)")
    if not result.checked:
        return
    for name, diff in result.max_abs_diff.items():
        kind, batch = name.split("/")
        mark = "ok" if diff <= result.atol else "FAILED"
        print(f"  check {kind:6s} batch {batch[1:]:>3s}: max |onnxruntime - torch| = {diff:.2e}  {mark}")
    verdict = "passed" if result.ok else "FAILED"
    print(f"Check {verdict}: tolerance {result.atol:g} on the logits")


def export_task(cfg: DictConfig) -> dict[str, Any]:
    """The task behind ``export.py``: validate the settings, export, check, print; returns the summary."""
    check_choice("format", cfg.get("format", "onnx"), FORMATS)
    if not cfg.get("ckpt_path"):
        raise UserError("ckpt_path is required: python export.py ckpt_path=logs/train/runs/<run>/checkpoints/<f>.ckpt")
    opset = cfg.get("opset", 17)
    check_opset(opset)
    result = export_onnx(cfg.ckpt_path, cfg.get("output"), opset=opset, check=True)
    print_result(result)
    return {"export": result.as_dict(), "metrics": {}}


def main(cfg: DictConfig) -> int:
    """Run :func:`export_task` the way every entry point does; the exit status for ``export.py``."""
    from lanmsff.training.task import run_cli

    summaries: list[dict[str, Any]] = []

    def task(c: DictConfig) -> dict[str, Any]:
        summaries.append(export_task(c))
        return summaries[-1]

    run_cli(task, cfg)  # exits with status 2 on a user error
    return 0 if summaries and summaries[-1]["export"]["ok"] else EXIT_CHECK_FAILED
