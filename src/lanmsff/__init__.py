"""lanmsff: a PyTorch Lightning + Hydra framework for multi-view facial expression recognition."""

import os

# libgomp (torch's OpenMP runtime) reads GOMP_SPINCOUNT once, when torch is first imported. Its default
# (300,000 spins at every barrier) makes torch's threads collapse 15-60x whenever another process takes
# a core of a small machine (measured on 2 shared cores; README, Speed). A short spin keeps the idle
# speed, avoids the collapse and changes no number. A value the user set is kept.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

__version__ = "0.1.0"
