"""lanmsff: a PyTorch Lightning + Hydra framework for multi-view facial expression recognition.

Importing the package changes nothing in the process; the entry points' process set-up is
:func:`lanmsff.runtime.process.prepare_process`.
"""

__version__ = "0.1.0"
