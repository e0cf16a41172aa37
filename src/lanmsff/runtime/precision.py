"""Which precision a run computes in: ``precision=auto`` resolved for inference and for training.

Two functions, two contracts:

* :func:`autocast_dtype` maps an inference ``precision`` (``auto`` / ``fp32`` / ``bf16``) and a
  device to the autocast dtype (``None`` = plain fp32);
* :func:`trainer_precision` maps ``trainer.precision`` (``auto`` or any Lightning value) to the
  Lightning precision string for the accelerator the run will use.

``auto`` means: on CUDA bf16 where the GPU supports it, else fp16; on a CPU bf16 only where the CPU
computes it natively (AVX-512 BF16 or AMX), else fp32. For training, models whose config sets
``cpu_bf16: false`` (the mobile timm baselines, slower in bf16 on CPUs; see docs/speed.md)
stay in fp32 on CPUs.
"""

from __future__ import annotations

from typing import Any

import torch

from lanmsff.errors import check_choice
from lanmsff.runtime.hardware import cpu_has_native_bf16, warn_if_bf16_emulated

AUTO = "auto"
PRECISIONS = ("auto", "fp32", "bf16")
_LIGHTNING = {torch.bfloat16: "bf16-mixed", torch.float16: "16-mixed", None: "32-true"}


def autocast_dtype(precision: str, device: torch.device | str = "cpu") -> torch.dtype | None:
    """The autocast dtype for an inference ``precision`` on ``device``; ``None`` means plain fp32.

    ``bf16`` always autocasts to bf16; on a CPU without native bf16 it warns
    (:class:`lanmsff.runtime.hardware.EmulatedBF16Warning`): oneDNN emulates it, slower than fp32.
    """
    check_choice("precision", precision, PRECISIONS)
    device = torch.device(device)
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type == "cpu":
            warn_if_bf16_emulated("precision='bf16'")
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def trainer_precision(precision: Any, accelerator: str = "auto", *, cpu_bf16: bool = True) -> Any:
    """The Lightning precision for ``trainer.precision``: ``auto`` resolved, other values passed through.

    ``cpu_bf16=False`` keeps fp32 on CPUs for models that bf16 slows down there. An explicit bf16
    setting on a CPU without native bf16 warns that it is emulated.
    """
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if str(precision) != AUTO:
        if str(precision).startswith("bf16") and not on_gpu:
            warn_if_bf16_emulated(f"trainer.precision={precision}")
        return precision
    if not on_gpu and not cpu_bf16:
        return "32-true"
    return _LIGHTNING[autocast_dtype(AUTO, "cuda" if on_gpu else "cpu")]
