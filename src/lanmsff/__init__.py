"""lanmsff: a PyTorch Lightning + Hydra framework for multi-view facial expression recognition."""

__version__ = "0.1.0"
