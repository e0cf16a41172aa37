"""The task behind ``export.py``: a training checkpoint's network as ONNX, checked with ONNX Runtime.

    python export.py ckpt_path=<run>/checkpoints/<file>.ckpt [output=<file>.onnx] [opset=17]

Exit status of ``export.py``: 0 when exported and checked, 1 when the check fails, 2 for a user
error (missing or foreign checkpoint, unknown format) with a one-line message. The file format and
the check are described in :mod:`lanmsff.onnx_export`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lanmsff.checkpoints import load_model
from lanmsff.errors import UserError, check_choice
from lanmsff.onnx_export import (
    ExportResult,
    check_onnx,
    check_opset,
    export_model_onnx,
    input_geometry,
    onnxruntime_module,
)

FORMATS = ("onnx",)
EXIT_CHECK_FAILED = 1


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
    if check:
        onnxruntime_module()  # fail before the work when the check cannot run
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


def exit_status(summary: dict[str, Any] | None) -> int:
    """``export.py``'s exit status once the task returned: 0 when the file passed its check, else 1."""
    return 0 if summary and summary["export"]["ok"] else EXIT_CHECK_FAILED
