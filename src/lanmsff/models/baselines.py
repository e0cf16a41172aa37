"""Lightweight baselines from timm, with the same interface as LANMSFF.

Every builder takes ``num_classes``, ``in_channels`` and ``image_size`` like :class:`LANMSFF`, so
that any model config trains through the same ``FERModule`` and data pipeline. Weights are random
by default; ``pretrained=True`` fetches ImageNet weights from the Hugging Face hub and fails with a
clear message (after a short timeout, never a hang) when they cannot be fetched.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

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
_PROBE_TIMEOUT_S = 3.0


def hub_reachable(timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the Hugging Face hub opens within ``timeout`` seconds."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Make huggingface_hub use its local cache only (it reads HF_HUB_OFFLINE once, at import)."""
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = previous or offline
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


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
    online = hub_reachable()
    try:
        with _hub_offline(not online):  # unreachable hub: fail at once unless the weights are cached
            return timm.create_model(model_name, pretrained=True, **build)
    except Exception as err:
        where = "the Hugging Face hub is not reachable and the" if not online else "the"
        raise UserError(
            f"model.net.pretrained=true: could not load pretrained weights for {model_name}: {where} weights "
            f"could not be fetched ({type(err).__name__}: {str(err)[:200]}). Use model.net.pretrained=false "
            "(the default), or put the weights into the Hugging Face cache (HF_HOME) beforehand."
        ) from None
