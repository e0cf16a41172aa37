"""Models: the LANMSFF network, its building blocks, and the model factory."""

from lanmsff.models.blocks import MassAtt, TwoPathBlock, pwfs
from lanmsff.models.lanmsff import LANMSFF

__all__ = ["LANMSFF", "MassAtt", "TwoPathBlock", "pwfs"]
