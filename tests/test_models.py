"""LANMSFF against the authors' reference: exact parameter counts, blocks, padding, validation."""

from __future__ import annotations

import math

import pytest
import torch

from lanmsff.errors import ConfigError
from lanmsff.models import LANMSFF, MassAtt, TwoPathBlock, pwfs
from lanmsff.models.blocks import SpatialAttention, TFSameConv2d, TFSameConvTranspose2d, channel_shuffle
from lanmsff.models.introspection import capture_attention, count_flops, count_params


@pytest.mark.parametrize(("num_classes", "expected"), [(7, 356_294), (8, 356_451)])
def test_parameter_count_matches_reference(num_classes: int, expected: int) -> None:
    model = LANMSFF(num_classes=num_classes)
    assert count_params(model) == expected
    running = sum(b.numel() for name, b in model.named_buffers() if "running_" in name)
    assert running == 2_112


@pytest.mark.parametrize("num_classes", [7, 8])
def test_forward_shapes(num_classes: int) -> None:
    model = LANMSFF(num_classes=num_classes).eval()
    x = torch.rand(3, 1, 64, 64)
    assert model(x).shape == (3, num_classes)
    assert model.forward_features(x).shape == (3, 156)
    assert [tuple(o.shape[1:]) for o in model.forward_blocks(x)] == [(66, 32, 32), (72, 16, 16), (78, 8, 8), (84, 4, 4)]


def test_flops_about_0_60_g() -> None:
    flops = count_flops(LANMSFF(), (1, 64, 64))
    assert 0.59e9 < flops < 0.61e9


def test_pwfs_hand_computed() -> None:
    # three groups of one channel each, three positions
    x = torch.tensor([[3.0, 1.0, 2.0], [-1.0, 4.0, 2.0], [5.0, 5.0, -7.0]]).reshape(1, 3, 1, 3)
    # position 0: (3, -1, 5) -> max 5, median 3 -> 4; position 1: (1, 4, 5) -> 5, 4 -> 4.5;
    # position 2: (2, 2, -7) -> 2, 2 -> 2
    assert torch.equal(pwfs(x).flatten(), torch.tensor([4.0, 4.5, 2.0]))
    y = torch.randn(2, 66, 5, 5)
    groups = torch.stack(y.chunk(3, dim=1))
    expected = 0.5 * (groups.max(0).values + groups.median(0).values)
    assert torch.allclose(pwfs(y), expected, atol=1e-6)
    assert pwfs(y).shape == (2, 22, 5, 5)


def test_pwfs_gradient_is_that_of_max_plus_median() -> None:
    """pwfs computes (sum - min) / 2; its gradient is that of the defining (max + median) / 2, in float64."""
    y = torch.randn(3, 30, 6, 6, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(3, 10, 6, 6, dtype=torch.float64)
    (ours,) = torch.autograd.grad((pwfs(y) * weights).sum(), y)
    groups = torch.stack(y.chunk(3, dim=1))
    defining = 0.5 * (groups.max(0).values + groups.median(0).values)
    (reference,) = torch.autograd.grad((defining * weights).sum(), y)
    torch.testing.assert_close(ours, reference)


def test_massatt_maps_in_unit_range_and_shapes_kept() -> None:
    att = MassAtt(72).eval()
    x = torch.randn(2, 72, 32, 32) * 3
    with capture_attention(att) as maps:
        y = att(x)
    assert y.shape == x.shape
    assert maps[".channel"].shape == (2, 72, 1, 1) and maps[".spatial"].shape == (2, 1, 32, 32)
    for m in maps.values():
        assert m.min() >= 0.0 and m.max() <= 1.0
    assert torch.allclose(y, x * maps[".channel"] * maps[".spatial"])


def test_capture_attention_on_full_model_and_hooks_removed() -> None:
    model = LANMSFF().eval()
    with capture_attention(model) as maps:
        model(torch.rand(1, 1, 64, 64))
    assert sorted(maps) == ["blocks.1.1.channel", "blocks.1.1.spatial", "blocks.3.1.channel", "blocks.3.1.spatial"]
    assert maps["blocks.1.1.spatial"].shape == (1, 1, 32, 32)
    assert maps["blocks.3.1.spatial"].shape == (1, 1, 8, 8)
    assert all(not m._forward_hooks for m in model.modules())


def test_tf_same_padding_is_bottom_right() -> None:
    conv = TFSameConv2d(1, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # picks the top-left tap
        conv.bias.zero_()
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    # TF pads only bottom/right, so output (0, 0) reads input (0, 0); symmetric padding would read a zero
    assert conv(x)[0, 0].tolist() == [[0.0, 2.0], [8.0, 10.0]]


def test_tf_same_transposed_conv_keeps_first_rows() -> None:
    deconv = TFSameConvTranspose2d(1, 1)
    with torch.no_grad():
        deconv.bias.zero_()
    x = torch.randn(1, 1, 3, 3)
    full = torch.nn.functional.conv_transpose2d(x, deconv.weight, stride=2)
    assert full.shape[-1] == 7
    assert torch.equal(deconv(x), full[..., :6, :6])


def test_spatial_attention_restores_size() -> None:
    assert SpatialAttention()(torch.randn(2, 84, 8, 8)).shape == (2, 1, 8, 8)


def test_channel_shuffle_interleaves_halves() -> None:
    x = torch.arange(6.0).reshape(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]


def test_two_path_output_width() -> None:
    assert TwoPathBlock(66, 72)(torch.randn(1, 66, 16, 16)).shape == (1, 72, 16, 16)


def test_keras_initialisation() -> None:
    model = LANMSFF()
    first = model.blocks[0][0][0]
    bound = math.sqrt(6 / 9)  # he_uniform, fan_in = 3 * 3 * 1
    assert first.weight.abs().max() <= bound and first.weight.abs().max() > 0.9 * bound
    assert torch.count_nonzero(first.bias) == 0
    bn = model.blocks[0][0][1]
    assert bn.eps == pytest.approx(1e-3) and bn.momentum == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"widths": [64, 72, 78, 84]}, "widths"),
        ({"widths": [66, 73, 78, 84]}, "widths"),
        ({"image_size": 48}, "image_size=48"),
        ({"image_size": 40, "attention": "none"}, "image_size=40"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_configuration_names_the_parameter(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LANMSFF(**kwargs)


def test_other_input_sizes() -> None:
    assert LANMSFF(image_size=96).eval()(torch.rand(1, 1, 96, 96)).shape == (1, 7)
    assert LANMSFF(image_size=32).eval()(torch.rand(1, 1, 32, 32)).shape == (1, 7)


@pytest.mark.slow
def test_compiled_module_keeps_checkpoint_keys_and_outputs() -> None:
    from lanmsff.training import FERModule

    net = {"_target_": "lanmsff.models.LANMSFF", "widths": [12, 12, 12, 12]}
    plain = FERModule(net, class_names=list("abcdefg")).eval()
    compiled = FERModule(net, class_names=list("abcdefg"), compile=True).eval()
    compiled.load_state_dict(plain.state_dict())
    assert list(compiled.state_dict()) == list(plain.state_dict())
    x = torch.rand(3, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(compiled(x), plain(x), atol=1e-4)
