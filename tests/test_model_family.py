"""The ablation family and the timm baselines: every config builds and trains; the knobs do what they say."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from lanmsff.errors import ConfigError, UserError
from lanmsff.models import LANMSFF, MassAtt
from lanmsff.models.baselines import timm_model
from lanmsff.models.introspection import count_params
from lanmsff.utils.config import config_group_options

from .conftest import compose_config

MODELS = config_group_options("model")
REFERENCE_PARAMS = 356_294
MASSATT_PARAMS = {72: 2_963, 84: 3_914}  # channel FCs + spatial convs of blocks 2 and 4


def test_family_is_complete() -> None:
    ablations = {m for m in MODELS if m.startswith("lanmsff_")}
    assert {"lanmsff_attn_channel", "lanmsff_attn_spatial", "lanmsff_attn_none"} <= ablations
    assert {"lanmsff_sel_none", "lanmsff_sel_max", "lanmsff_sel_mean"} <= ablations
    assert {"lanmsff_fuse_4", "lanmsff_fuse_34", "lanmsff_fuse_234", "lanmsff_no_dilation"} <= ablations
    assert {"mobilenetv3_small", "resnet18", "efficientnet_b0", "ghostnet", "mobilenetv4_small"} <= set(MODELS)


@pytest.mark.parametrize("name", [m for m in MODELS if m.startswith("lanmsff_")])
def test_each_ablation_changes_exactly_one_knob(name: str, tmp_path: Path) -> None:
    reference = compose_config("train", ["model=lanmsff"], tmp_path).model.net
    variant = compose_config("train", [f"model={name}"], tmp_path).model.net
    changed = [k for k in reference if reference[k] != variant[k]]
    assert len(changed) == 1, changed


@pytest.mark.parametrize("num_classes", [7, 8])
@pytest.mark.parametrize("name", MODELS)
def test_every_model_builds_runs_and_steps(name: str, num_classes: int, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"model={name}"], tmp_path)
    torch.manual_seed(0)
    net = instantiate(cfg.model.net, num_classes=num_classes, in_channels=1, image_size=64)
    x, y = torch.rand(4, 1, 64, 64), torch.randint(0, num_classes, (4,))
    logits = net(x)
    assert logits.shape == (4, num_classes)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    before = [p.detach().clone() for p in net.parameters()]
    torch.nn.functional.cross_entropy(logits, y).backward()
    optimizer.step()
    changed = [not torch.equal(a, p) for a, p in zip(before, net.parameters(), strict=True)]
    # the stem and the classifier always learn; some baselines zero-init the last BN of each block,
    # which leaves the convolution before it without gradient on the first step
    assert changed[0] and changed[-1] and sum(changed) >= len(changed) / 3
    assert torch.isfinite(net(x)).all()


def test_attention_none_removes_exactly_the_massatt_parameters() -> None:
    assert count_params(LANMSFF(attention="none")) == REFERENCE_PARAMS - sum(MASSATT_PARAMS.values())
    assert count_params(MassAtt(72)) == MASSATT_PARAMS[72] and count_params(MassAtt(84)) == MASSATT_PARAMS[84]


def test_selection_none_changes_only_the_classifier() -> None:
    reference, full = LANMSFF(), LANMSFF(selection="none")
    assert reference.classifier.in_features == 156 and full.classifier.in_features == 300
    assert count_params(full) - count_params(reference) == (300 - 156) * 7
    assert count_params(full.blocks) == count_params(reference.blocks)
    for mode in ("max", "mean"):
        assert count_params(LANMSFF(selection=mode)) == REFERENCE_PARAMS


@pytest.mark.parametrize(
    ("blocks", "inputs"), [([4], 84), ([3, 4], 26 + 84), ([2, 3, 4], 24 + 26 + 84), ([1, 4], 22 + 84)]
)
def test_fusion_blocks_set_the_classifier_input(blocks: list[int], inputs: int) -> None:
    model = LANMSFF(fusion_blocks=blocks)
    assert model.classifier.in_features == inputs == model.num_features
    assert model.forward_features(torch.rand(2, 1, 64, 64)).shape == (2, inputs)


def test_no_dilation_keeps_parameter_count_but_changes_the_function() -> None:
    torch.manual_seed(0)
    dilated = LANMSFF().eval()
    plain = LANMSFF(dilated_path=False).eval()
    plain.load_state_dict(dilated.state_dict())
    assert count_params(plain) == REFERENCE_PARAMS
    x = torch.rand(2, 1, 64, 64)
    assert not torch.allclose(dilated(x), plain(x))


def test_channel_and_spatial_attention_differ_from_full_and_each_other() -> None:
    torch.manual_seed(0)
    full = MassAtt(72).eval()
    channel, spatial = MassAtt(72, mode="channel").eval(), MassAtt(72, mode="spatial").eval()
    channel.channel.load_state_dict(full.channel.state_dict())
    spatial.spatial.load_state_dict(full.spatial.state_dict())
    x = torch.randn(2, 72, 16, 16)
    outputs = {"full": full(x), "channel": channel(x), "spatial": spatial(x)}
    assert torch.allclose(outputs["full"], x * full.channel(x) * full.spatial(x))
    assert torch.allclose(outputs["channel"], x * full.channel(x))
    assert torch.allclose(outputs["spatial"], x * full.spatial(x))
    for a, b in (("full", "channel"), ("full", "spatial"), ("channel", "spatial")):
        assert (outputs[a] - outputs[b]).abs().max() > 1e-3, (a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"attention": "cbam"},
            "attention='cbam' is not valid; allowed values: 'massatt', 'channel', 'spatial', 'none'",
        ),
        ({"selection": "median"}, "selection='median' is not valid; allowed values: 'pwfs', 'none', 'max', 'mean'"),
        ({"fusion_blocks": []}, r"fusion_blocks=\[\] must be a non-empty subset of \[1, 2, 3, 4\]"),
        ({"fusion_blocks": [4, 5]}, r"fusion_blocks=\[4, 5\] must be a non-empty subset of \[1, 2, 3, 4\]"),
        ({"widths": [66, 72]}, "widths"),
    ],
)
def test_invalid_knobs_name_the_knob_and_choices(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LANMSFF(**kwargs)


def test_selection_none_accepts_widths_not_divisible_by_three() -> None:
    assert LANMSFF(widths=[64, 72, 80, 84], selection="none").classifier.in_features == 300


def test_unknown_timm_architecture() -> None:
    with pytest.raises(ConfigError, match="not a timm architecture"):
        timm_model("resnet_does_not_exist")


def test_pretrained_without_network_fails_clearly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    import lanmsff.models.baselines as baselines

    monkeypatch.setattr(baselines, "hub_reachable", lambda timeout=3.0: False)  # a machine without network
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # and nothing cached
    with pytest.raises(UserError, match="could not load pretrained weights for mobilenetv3_small_100: the Hugging"):
        timm_model("mobilenetv3_small_100", pretrained=True)
    assert constants.HF_HUB_OFFLINE is False or os.environ.get("HF_HUB_OFFLINE")  # restored afterwards


def test_baselines_take_one_channel() -> None:
    net = timm_model("resnet18", num_classes=8, in_channels=1)
    assert net(torch.rand(2, 1, 64, 64)).shape == (2, 8)
    assert hasattr(net, "forward_features") and hasattr(net, "forward_head")


def _summary(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lanmsff.models.complexity", *args], capture_output=True, text=True)


def test_summary_command_prints_blocks_and_total() -> None:
    result = _summary("model=lanmsff")
    assert result.returncode == 0, result.stderr
    assert "356,294" in result.stdout and "0.6012" in result.stdout
    for block, params in (
        ("blocks.0", "45,342"),
        ("blocks.1", "83,531"),
        ("blocks.2", "112,788"),
        ("blocks.3", "113,534"),
    ):
        line = next(line for line in result.stdout.splitlines() if block in line)
        assert params in line
    assert "61.0%" in result.stdout  # block 1 at full resolution dominates the compute


def test_summary_command_for_a_baseline_and_unknown_model() -> None:
    assert "1,524,743" in _summary("model=mobilenetv3_small").stdout
    result = _summary("model=nope")
    assert result.returncode == 2
    assert (
        "available models:" in result.stderr and "lanmsff_fuse_4" in result.stderr and "Traceback" not in result.stderr
    )
