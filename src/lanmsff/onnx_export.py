"""ONNX: write a network as an ONNX file, check the file with ONNX Runtime, open it as a session.

The graph takes ``image`` ``(batch, C, S, S)`` float32 in [0, 1] (the batch axis is dynamic, the
image size fixed) and returns ``logits`` ``(batch, num_classes)``. It is written with torch's
TorchScript-based exporter (the dynamo exporter is tried only if that fails) to a temporary file that
is renamed into place, so a failed export never leaves a partial file.

The check runs the file with ONNX Runtime on uniform noise and on synthetic faces
(:func:`lanmsff.data.samples.sample_faces`), each at batch sizes 1 and 17, and compares the logits
with the PyTorch model in fp32: the largest absolute difference must be at most :data:`ATOL`.
LANMSFF's MassAtt spatial path (TensorFlow-'same' asymmetric ``F.pad`` and the cropped
``ConvTranspose2d``) exports as ``Pad`` and ``Slice`` with constants for the fixed image size and
shape arithmetic for the batch, which this check covers.

Used by ``export.py`` (:mod:`lanmsff.tasks.export`) and by ``optimize(backend="onnxruntime")``.
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
from torch import nn

from lanmsff.data.samples import sample_faces
from lanmsff.errors import ConfigError, UserError

ATOL = 1e-4
CHECK_BATCH_SIZES = (1, 17)
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


def onnxruntime_module() -> Any:
    """The ``onnxruntime`` module, or :class:`UserError` saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError(
            "ONNX Runtime is not installed: pip install -e '.[export]' (or: pip install onnx onnxruntime)"
        ) from None
    return onnxruntime


def check_inputs(in_channels: int, image_size: int, batch_sizes: tuple[int, ...] = CHECK_BATCH_SIZES) -> dict:
    """Inputs of the check: ``{"random/b1": tensor, "faces/b1": tensor, ...}``."""
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
    ort = onnxruntime_module()
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


def onnxruntime_session(net: nn.Module, *, threads: int | None = None) -> Any:
    """An ONNX Runtime session (CPU) of ``net`` exported in fp32; ``threads`` intra-op threads (default:
    torch's thread count). Raises :class:`ConfigError` when onnxruntime is missing."""
    try:
        ort = onnxruntime_module()
    except UserError as err:
        raise ConfigError(f"backend='onnxruntime': {err}") from None
    in_channels, image_size = input_geometry(net)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_model_onnx(net, path, in_channels=in_channels, image_size=image_size)
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
