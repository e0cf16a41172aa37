"""Training paths measured as speed levers compute the same training as the plain path (never a time).

Each lever that changes how a training step is computed gets two checks: the same loss curve as the
plain channels-last fp32 step over a few steps (fp32, dropout off so that the curves are
deterministic), and every convolution's weight gradient equal to a float64 recomputation
(:func:`lanmsff.bench.models.audit_conv_weight_grads`, the audit that found the bf16 dilated-conv bug).
"""

from __future__ import annotations

import copy

import pytest
import torch

from lanmsff.bench import models as bm
from lanmsff.bench.levers import apply_block_layout
from lanmsff.models import LANMSFF

STEPS = 3
BATCH = 8


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(BATCH, 1, 64, 64, generator=generator), torch.randint(0, 7, (BATCH,), generator=generator)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return LANMSFF(num_classes=7, widths=(12, 12, 12, 12), dropout=0.0, bn_momentum=0.1)


def _losses(model: torch.nn.Module, variant: bm.TrainVariant, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    net, optimizer = bm.prepare_training(model, variant)
    return [float(bm.train_step(net, optimizer, variant, x, y)) for _ in range(STEPS)]


@pytest.mark.parametrize("nchw_blocks", [(0,), (0, 1)])
def test_memory_format_per_block_trains_the_same(nchw_blocks: tuple[int, ...], data: tuple) -> None:
    x, y = data
    plain = _losses(_model(), bm.TrainVariant(True, False), x, y)
    mixed_model = _model()
    apply_block_layout(mixed_model, nchw_blocks)
    mixed = _losses(mixed_model, bm.TrainVariant(False, False), x, y)  # the blocks keep their own layouts
    torch.testing.assert_close(torch.tensor(mixed), torch.tensor(plain), atol=1e-4, rtol=1e-4)
    audit = bm.audit_conv_weight_grads(copy.deepcopy(mixed_model), bm.TrainVariant(False, False), x, y)
    assert audit["ok"] and audit["convolutions"] > 0 and audit["max_rel_err"] < 1e-4


# libgomp, torch's OpenMP runtime, reads GOMP_SPINCOUNT once when torch is imported; its default
# (300,000 spins at every barrier) makes two threads on two shared cores collapse (measured 3.7 instead
# of 45 images/s) whenever another process takes a core. lanmsff's __init__ sets a short spin, which
# keeps the idle speed and changes no number; it must come before torch is imported.
def test_importing_lanmsff_sets_a_short_openmp_spin_before_torch_loads() -> None:
    import os
    import subprocess
    import sys

    code = "import lanmsff, os, sys; assert 'torch' not in sys.modules; print(os.environ.get('GOMP_SPINCOUNT'))"
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    default = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert default.stdout.strip() == "10000"
    mine = subprocess.run(
        [sys.executable, "-c", code], env={**env, "GOMP_SPINCOUNT": "5"}, capture_output=True, text=True, check=True
    )
    assert mine.stdout.strip() == "5"  # a user's own setting wins
