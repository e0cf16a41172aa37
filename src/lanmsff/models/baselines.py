"""Lightweight baselines from timm, with the same interface as LANMSFF.

Every builder takes ``num_classes``, ``in_channels`` and ``image_size`` like :class:`LANMSFF`, so
that any model config trains through the same ``FERModule`` and data pipeline. Weights are random
by default; ``pretrained=True`` fetches ImageNet weights from the Hugging Face hub and fails with a
clear message (after a short timeout, never a hang) when they cannot be fetched.
"""

from __future__ import annotations

import os
from typing import Any

import timm
from torch import nn

from lanmsff.errors import ConfigError, UserError

# config name -> timm architecture
BASELINES = {
    "mobilenetv3_small": "mobilenetv3_small_100",
    "resnet18": "resnet18",
    "efficientnet_b0": "efficientnet_b0",
    "ghostnet": "ghostnet_100",
    "mobilenetv4_small": "mobilenetv4_conv_small",
}
_HUB_TIMEOUT_S = "10"


def timm_model(
    model_name: str,
    *,
    num_classes: int = 7,
    in_channels: int = 1,
    image_size: int = 64,
    pretrained: bool = False,
    drop_rate: float = 0.0,
    **kwargs: Any,
) -> nn.Module:
    """A timm architecture for ``in_channels`` x ``image_size`` x ``image_size`` inputs.

    Args:
        model_name: a timm architecture name, e.g. ``mobilenetv3_small_100``.
        num_classes, in_channels: classifier size and input channels (timm adapts pretrained stems).
        image_size: accepted for interface parity; timm's CNNs take any size of at least 32.
        pretrained: load ImageNet weights (needs network access or a filled Hugging Face cache).
        drop_rate: dropout before the classifier.
    """
    if model_name not in timm.list_models():
        raise ConfigError(f"model.net.model_name={model_name!r} is not a timm architecture (see timm.list_models())")
    if image_size < 32:
        raise ConfigError(f"image_size={image_size} is too small for {model_name}; use at least 32")
    build = dict(num_classes=num_classes, in_chans=in_channels, drop_rate=drop_rate, **kwargs)
    if not pretrained:
        return timm.create_model(model_name, pretrained=False, **build)
    for key in ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
        os.environ.setdefault(key, _HUB_TIMEOUT_S)
    try:
        return timm.create_model(model_name, pretrained=True, **build)
    except Exception as err:
        raise UserError(
            f"model.net.pretrained=true: could not load pretrained weights for {model_name} "
            f"({type(err).__name__}: {str(err)[:300]}). Without network access use model.net.pretrained=false "
            "(the default), or fill the Hugging Face cache (HF_HOME) with the weights beforehand."
        ) from None
