"""Test-time augmentation (lanmsff.inference.tta): the views, and probabilities averaged over them."""

from __future__ import annotations

import pytest
import torch

from lanmsff.errors import ConfigError
from lanmsff.inference import optimize
from lanmsff.inference.tta import default_shift, shifted, tta_probabilities, tta_views
from lanmsff.models.lanmsff import LANMSFF


def test_views_of_each_mode() -> None:
    x = torch.rand(3, 1, 64, 64)
    assert tta_views(x, "none").shape == (1, 3, 1, 64, 64)
    flip = tta_views(x, "flip")
    assert flip.shape == (2, 3, 1, 64, 64) and torch.equal(flip[1], x.flip(-1))
    views = tta_views(x, "flip_shift")
    assert views.shape == (10, 3, 1, 64, 64) and torch.equal(views[0], x)
    assert default_shift(64) == 4 and default_shift(8) == 1
    with pytest.raises(ConfigError, match="tta='rotate' is not valid"):
        tta_views(x, "rotate")


def test_shift_moves_the_content_and_replicates_the_border() -> None:
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 3, 4] = 1.0
    moved = shifted(x, 2, -1)  # 2 right, 1 up
    assert moved.shape == x.shape and moved[0, 0, 2, 6] == 1.0 and moved.sum() == 1.0
    ramp = torch.arange(8.0).repeat(8, 1)[None, None]
    assert torch.equal(shifted(ramp, 3, 0)[0, 0, 0, :4], torch.zeros(4))  # column 0 replicated into the gap
    assert torch.equal(shifted(x, 0, 0), x)


def test_probabilities_are_averaged_over_the_views() -> None:
    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 16, 5))
    x = torch.rand(4, 1, 16, 16)
    plain = tta_probabilities(linear, x, "none")
    assert torch.allclose(plain, linear(x).softmax(1))
    flip = tta_probabilities(linear, x, "flip")
    assert torch.allclose(flip, (linear(x).softmax(1) + linear(x.flip(-1)).softmax(1)) / 2, atol=1e-6)
    both = tta_probabilities(linear, x, "flip_shift", shift=2)
    assert both.shape == (4, 5) and torch.allclose(both.sum(1), torch.ones(4))
    symmetric = x + x.flip(-1)  # a mirror-symmetric face: flipping changes nothing
    assert torch.allclose(tta_probabilities(linear, symmetric, "flip"), tta_probabilities(linear, symmetric, "none"))


def test_works_with_the_optimised_network() -> None:
    torch.manual_seed(0)
    net = LANMSFF(num_classes=7, widths=[12, 12, 12, 12]).eval()
    fast = optimize(net, precision="fp32")
    x = torch.rand(3, 1, 64, 64)
    probs = tta_probabilities(fast, x, "flip_shift")  # 30 images through the micro-batches
    assert probs.shape == (3, 7) and probs.dtype == torch.float32
    with torch.no_grad():
        assert torch.allclose(tta_probabilities(fast, x, "none"), net(x).softmax(1), atol=1e-4)
