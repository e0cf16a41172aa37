"""Models: the LANMSFF network, its building blocks, baselines, and tools to inspect and import them."""

from lanmsff.models.blocks import MassAtt, TwoPathBlock, pwfs
from lanmsff.models.introspection import capture_attention, count_flops, count_params, model_size_mb
from lanmsff.models.keras_weights import load_keras_weights
from lanmsff.models.lanmsff import LANMSFF

__all__ = [
    "LANMSFF",
    "MassAtt",
    "TwoPathBlock",
    "capture_attention",
    "count_flops",
    "count_params",
    "load_keras_weights",
    "model_size_mb",
    "pwfs",
]
