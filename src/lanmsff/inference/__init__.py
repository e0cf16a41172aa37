"""Fast inference: :func:`optimize` makes an inference-ready copy of any classifier of this project.

from lanmsff.checkpoints import load_model
from lanmsff.inference import optimize

net, class_names, image_size, _ = load_model("<run>/checkpoints/epoch_012.ckpt")
fast = optimize(net, precision="auto", backend="eager")  # or "jit", "compile", "onnxruntime"
"""

from lanmsff.inference.folding import count_batchnorm, fold_batchnorm
from lanmsff.inference.optimize import BACKENDS, DEFAULT_MICRO_BATCH, Float32Stem, OptimizedModel, optimize

__all__ = [
    "BACKENDS",
    "DEFAULT_MICRO_BATCH",
    "Float32Stem",
    "OptimizedModel",
    "count_batchnorm",
    "fold_batchnorm",
    "optimize",
]
