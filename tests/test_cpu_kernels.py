"""Training paths measured as speed levers compute the same training as the plain path (never a time).

Each lever that changes how a training step is computed gets two checks: the same loss curve as the
plain channels-last fp32 step over a few steps (fp32, dropout off so that the curves are
deterministic), and every convolution's weight gradient equal to a float64 recomputation
(:func:`benchmarks.models.audit_conv_weight_grads`, the audit that found the bf16 dilated-conv bug).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from benchmarks import models as bm
from benchmarks.levers import apply_block_layout
from lanmsff.inference.folding import count_batchnorm, fold_batchnorm
from lanmsff.models import LANMSFF, pwfs
from lanmsff.runtime import hardware
from lanmsff.training import cpu_kernels
from lanmsff.training.cpu_kernels import dilated_conv
from lanmsff.training.cpu_kernels.audit import audit_conv_weight_grads
from lanmsff.training.cpu_kernels.batch_norm import (
    AlignedRowsBatchNorm2d,
    _AlignedRowsBatchNorm,
    aligned_rows,
    convert_aligned_rows_batch_norm,
)
from lanmsff.training.cpu_kernels.dilated_conv import (
    SpaceToBatchConv2d,
    conv2d_space_to_batch,
    convert_space_to_batch,
    fits_space_to_batch,
)
from lanmsff.training.cpu_kernels.elementwise import MaskDropout, pooled_pwfs

STEPS = 3
BATCH = 8
# Loss curves of two ways to compute the same step agree to fp32 rounding on the first step; Adam's
# normalisation then amplifies rounding in near-zero gradients, by up to about 1e-3 by the third step
# when oneDNN picks other kernels (one thread, another CPU). A wrong kernel is far off; every gradient
# is also checked against float64 (the audits, to 1e-4).
FIRST_STEP_FP32 = 1e-5
CURVE_FP32 = 3e-3


def assert_same_curve(fast: list[float], plain: list[float], *, bf16: bool = False) -> None:
    if bf16:  # bf16 rounds differently from fp32, not a different function
        torch.testing.assert_close(torch.tensor(fast), torch.tensor(plain), atol=2e-2, rtol=2e-2)
        return
    assert abs(fast[0] - plain[0]) <= FIRST_STEP_FP32 * max(1.0, abs(plain[0])), (fast, plain)
    torch.testing.assert_close(torch.tensor(fast), torch.tensor(plain), atol=CURVE_FP32, rtol=CURVE_FP32)


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


def _count_calls(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[int]:
    """Count the calls of ``owner.name`` (a module's function or an autograd Function's static ``forward``)."""
    calls: list[int] = []
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, staticmethod(counted) if isinstance(owner, type) else counted)
    return calls


@pytest.mark.parametrize("nchw_blocks", [(0,), (0, 1)])
def test_memory_format_per_block_trains_the_same(nchw_blocks: tuple[int, ...], data: tuple) -> None:
    x, y = data
    plain = _losses(_model(), bm.TrainVariant(True, False), x, y)
    mixed_model = _model()
    apply_block_layout(mixed_model, nchw_blocks)
    mixed = _losses(mixed_model, bm.TrainVariant(False, False), x, y)  # the blocks keep their own layouts
    assert_same_curve(mixed, plain)
    audit = bm.audit_conv_weight_grads(copy.deepcopy(mixed_model), bm.TrainVariant(False, False), x, y)
    assert audit["ok"] and audit["convolutions"] > 0 and audit["max_rel_err"] < 1e-4


def _dilated_pair(groups: int, dilation: tuple[int, int], padding: tuple[int, int]) -> tuple[nn.Conv2d, nn.Conv2d]:
    torch.manual_seed(0)
    plain = nn.Conv2d(12, 12, 3, padding=padding, dilation=dilation, groups=groups).double()
    fast = nn.Sequential(nn.Conv2d(12, 12, 3, padding=padding, dilation=dilation, groups=groups)).double()
    fast.load_state_dict(nn.Sequential(plain).state_dict())
    assert convert_space_to_batch(fast) == 1 and list(fast.state_dict()) == ["0.weight", "0.bias"]
    return plain, fast[0]


# A dilated convolution on each of the dilation's sub-grids is the undilated one: the outputs and every
# gradient agree to float64 rounding, for depthwise and plain convolutions, both memory formats,
# unequal dilations and a padding that changes the output size.
@pytest.mark.parametrize("groups", [1, 12])
@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize(("dilation", "padding", "size"), [((2, 2), (2, 2), (16, 12)), ((2, 3), (4, 3), (10, 9))])
def test_space_to_batch_equals_the_dilated_convolution(groups, memory_format, dilation, padding, size) -> None:
    plain, fast = _dilated_pair(groups, dilation, padding)
    fast = fast.to(memory_format=memory_format)
    x = torch.randn(3, 12, *size, dtype=torch.float64).contiguous(memory_format=memory_format)
    assert fits_space_to_batch(fast, x)
    x_plain, x_fast = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_plain, out_fast = plain(x_plain), conv2d_space_to_batch(fast, x_fast)
    assert out_fast.shape == out_plain.shape
    assert out_fast.is_contiguous(memory_format=memory_format)  # the layout the rest of the network runs in
    torch.testing.assert_close(out_fast, out_plain, rtol=0, atol=1e-12)
    grad = torch.randn_like(out_plain)
    out_plain.backward(grad)
    out_fast.backward(grad)
    for a, b in [(x_fast.grad, x_plain.grad), (fast.weight.grad, plain.weight.grad), (fast.bias.grad, plain.bias.grad)]:
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


# Where it is used: on CPUs, under bf16 autocast for every fitting shape, in fp32 for depthwise
# convolutions, and for plain ones too where torch runs no AVX-512 kernels (the measured choices); a
# shape that cannot be split stays the dilated convolution.
@pytest.mark.parametrize("avx512", [True, False])
def test_space_to_batch_is_used_where_it_is_faster_and_fits(monkeypatch, avx512) -> None:
    monkeypatch.setattr(dilated_conv, "cpu_runs_avx512", lambda: avx512)
    x = torch.randn(2, 12, 16, 16)
    depthwise, plain = _dilated_pair(12, (2, 2), (2, 2))[1].float(), _dilated_pair(1, (2, 2), (2, 2))[1].float()
    assert depthwise.uses_space_to_batch(x)
    assert plain.uses_space_to_batch(x) is (not avx512)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert depthwise.uses_space_to_batch(x) and plain.uses_space_to_batch(x)
        odd = torch.randn(2, 12, 15, 16)
        assert not fits_space_to_batch(plain, odd) and not plain.uses_space_to_batch(odd)
    strided = SpaceToBatchConv2d(12, 12, 3, padding=2, dilation=2, stride=2)
    assert not fits_space_to_batch(strided, x)
    reference = _dilated_pair(12, (2, 2), (2, 2))[0]
    odd64 = torch.randn(2, 12, 15, 16, dtype=torch.float64)
    torch.testing.assert_close(_dilated_pair(12, (2, 2), (2, 2))[1](odd64), reference(odd64), rtol=0, atol=1e-12)


# The run-time decision itself: with torch's kernels limited to AVX2 (as on the AMD kind) a plain dilated
# convolution is computed on sub-grids in fp32; with this CPU's own kernels it is where they are not AVX-512.
@pytest.mark.parametrize("capability", ["avx2", None])
def test_the_avx512_decision_follows_torchs_kernels(capability) -> None:
    code = (
        "import torch\n"
        "from lanmsff.runtime.hardware import cpu_runs_avx512\n"
        "from lanmsff.training.cpu_kernels.dilated_conv import SpaceToBatchConv2d\n"
        "conv = SpaceToBatchConv2d(12, 12, 3, padding=2, dilation=2)\n"
        "used = conv.uses_space_to_batch(torch.randn(2, 12, 16, 16))\n"
        "print(torch.backends.cpu.get_cpu_capability(), cpu_runs_avx512(), used)"
    )
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    if capability:
        env["ATEN_CPU_CAPABILITY"] = capability
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    kernels, avx512, used = result.stdout.split()
    assert used == str(avx512 == "False")
    if capability:
        assert (kernels, avx512) == ("AVX2", "False")
    elif hardware.cpu_flags():  # torch runs AVX-512 kernels where the CPU has the four extensions they need
        assert avx512 == str({"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= hardware.cpu_flags())


# torch.compile's cache under kernel limits is a folder of its own (torch 2.14.1 crashed loading kernels
# cached under ATEN_CPU_CAPABILITY=avx2 in a process without it); a folder the user chose is kept.
def test_kernel_limits_get_their_own_inductor_cache(monkeypatch, tmp_path) -> None:
    from torch._inductor.runtime.cache_dir_utils import cache_dir, default_cache_dir

    default = os.path.abspath(default_cache_dir())
    monkeypatch.setenv(hardware.INDUCTOR_CACHE_ENV, default)  # (as inductor leaves it after its first use)
    for name in hardware.ISA_LIMIT_ENV:
        monkeypatch.delenv(name, raising=False)
    assert hardware.use_inductor_cache_of_isa_limits() is None and cache_dir() == default
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert hardware.use_inductor_cache_of_isa_limits() == f"{default}-avx2-avx2" == cache_dir()
    own = str(tmp_path / "inductor")
    monkeypatch.setenv(hardware.INDUCTOR_CACHE_ENV, own)
    assert hardware.use_inductor_cache_of_isa_limits() is None and cache_dir() == own


# In bf16 channels-last, where oneDNN's dilated weight-gradient kernel is wrong, the space-to-batch
# convolution's weight gradient is the float64 one up to bf16 rounding.
def test_space_to_batch_weight_gradients_are_right_in_bf16_channels_last() -> None:
    plain, fast = _dilated_pair(1, (2, 2), (2, 2))
    fast = fast.float().to(memory_format=torch.channels_last)
    x = torch.randn(8, 12, 32, 32).contiguous(memory_format=torch.channels_last)
    grad_out = torch.randn(8, 12, 32, 32)
    reference = torch.autograd.grad(plain(x.double()), plain.weight, grad_out.double())[0].float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fast(x)
    assert out.dtype == torch.bfloat16
    (grad_w,) = torch.autograd.grad(out.float(), fast.weight, grad_out)
    assert ((grad_w - reference).norm() / reference.norm()).item() < 0.02


@pytest.mark.parametrize("bf16", [False, True])
def test_space_to_batch_trains_the_same(bf16: bool, data: tuple, monkeypatch) -> None:
    x, y = data
    variant = bm.TrainVariant(True, bf16, space_to_batch=True)
    plain = _losses(_model(), bm.TrainVariant(True, False), x, y)
    calls = _count_calls(monkeypatch, dilated_conv, "conv2d_space_to_batch")
    fast = _losses(_model(), variant, x, y)
    # every dilated convolution of each step in bf16 (6), at least the 2 depthwise ones in fp32
    assert len(calls) >= STEPS * (6 if bf16 else 2)
    assert_same_curve(fast, plain, bf16=bf16)
    audit = bm.audit_conv_weight_grads(_model(), variant, x, y)
    assert audit["ok"] and audit["convolutions"] > 0
    assert audit["max_rel_err"] < (0.02 if bf16 else 1e-4)


def _batch_norm_pair(channels: int, dtype: torch.dtype = torch.float64) -> tuple[nn.BatchNorm2d, nn.BatchNorm2d]:
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01).to(dtype)
    with torch.no_grad():
        plain.weight.uniform_(0.5, 1.5), plain.bias.normal_()
        plain.running_mean.normal_(), plain.running_var.uniform_(0.5, 2.0)
    fast = copy.deepcopy(plain)
    assert convert_aligned_rows_batch_norm(nn.Sequential(fast)) == 1 and type(fast) is AlignedRowsBatchNorm2d
    assert list(fast.state_dict()) == list(plain.state_dict())
    return plain, fast


def _batch_norm_step(bn: nn.BatchNorm2d, x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = x.detach().clone().requires_grad_()
    out = bn(x)
    out.backward(grad)
    return out, x.grad, bn.weight.grad, bn.bias.grad, bn.running_mean, bn.running_var, bn.num_batches_tracked


# BatchNorm on aligned rows is BatchNorm: in float64 the output, every gradient and the running statistics
# agree with nn.BatchNorm2d to rounding, for channel counts that need 16, 8 and 4 pixels per row (LANMSFF's
# 66, 36 and 72), over two training steps, and the output and input gradient stay channels-last.
@pytest.mark.parametrize(("channels", "size"), [(66, 16), (36, 8), (72, 12)])
def test_aligned_rows_batch_norm_equals_batch_norm(channels: int, size: int, monkeypatch) -> None:
    monkeypatch.setattr(AlignedRowsBatchNorm2d, "min_elements", 0)
    plain, fast = _batch_norm_pair(channels)
    assert aligned_rows(channels) == {66: 16, 36: 8, 72: 4}[channels]
    for step in range(2):
        x = (torch.randn(4, channels, size, size, dtype=torch.float64) * 3 + step).contiguous(
            memory_format=torch.channels_last
        )
        grad = torch.randn_like(x)
        assert fast.uses_aligned_rows(x.clone().requires_grad_())
        expected, got = _batch_norm_step(plain, x, grad), _batch_norm_step(fast, x, grad)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-11)
        assert got[0].is_contiguous(memory_format=torch.channels_last)
        assert got[1].is_contiguous(memory_format=torch.channels_last)


# Where it is used: training, a channels-last CPU tensor that needs a gradient, a channel count that leaves
# a partial vector, at least min_elements values. Everything else is nn.BatchNorm2d (the same numbers).
def test_aligned_rows_batch_norm_is_used_only_where_it_applies() -> None:
    _, fast = _batch_norm_pair(66, torch.float32)
    big = torch.randn(2, 66, 64, 64).contiguous(memory_format=torch.channels_last).requires_grad_()
    assert big.numel() >= AlignedRowsBatchNorm2d.min_elements and fast.uses_aligned_rows(big)
    assert not fast.uses_aligned_rows(big.detach())  # no gradient needed
    assert not fast.uses_aligned_rows(big.detach().contiguous().requires_grad_())  # NCHW
    assert not fast.uses_aligned_rows(big[:, :, :8, :8].contiguous(memory_format=torch.channels_last))  # small
    with torch.no_grad():
        assert not fast.uses_aligned_rows(big)
    assert not fast.eval().uses_aligned_rows(big)
    bf16_weights = copy.deepcopy(fast).train().bfloat16()  # bf16-true training keeps torch's kernel
    assert not bf16_weights.uses_aligned_rows(big.detach().bfloat16().requires_grad_())
    _, aligned = _batch_norm_pair(64, torch.float32)
    assert aligned_rows(64) == 1 and not aligned.uses_aligned_rows(
        big[:, :64].contiguous(memory_format=torch.channels_last)
    )
    x = torch.randn(2, 66, 16, 16)
    plain, fast = _batch_norm_pair(66, torch.float32)
    torch.testing.assert_close(fast.eval()(x), plain.eval()(x), rtol=0, atol=0)


# In bf16 (what autocast hands BatchNorm after a convolution) the output and gradients are the float64 ones up
# to bf16 rounding, no further from them than nn.BatchNorm2d's own bf16 result is.
def test_aligned_rows_batch_norm_in_bf16_is_as_close_to_float64_as_batch_norm(monkeypatch) -> None:
    monkeypatch.setattr(AlignedRowsBatchNorm2d, "min_elements", 0)
    plain, fast = _batch_norm_pair(66, torch.float32)
    x = (torch.randn(4, 66, 32, 32) * 3 + 1).contiguous(memory_format=torch.channels_last)
    grad = torch.randn_like(x)
    reference = _batch_norm_step(copy.deepcopy(plain).double(), x.double(), grad.double())
    bf16 = x.bfloat16(), grad.bfloat16()
    assert fast.uses_aligned_rows(bf16[0].clone().requires_grad_())
    got, torchs = _batch_norm_step(fast, *bf16), _batch_norm_step(plain, *bf16)
    assert got[-1].item() == torchs[-1].item() == 1  # num_batches_tracked
    for ours, theirs, exact in zip(got[:-1], torchs[:-1], reference[:-1], strict=True):
        error = ((ours.double() - exact).norm() / exact.norm()).item()
        torch_error = ((theirs.double() - exact).norm() / exact.norm()).item()
        assert error <= 1.5 * torch_error + 1e-6, (error, torch_error)
        assert error < 5e-3  # bf16 keeps 8 bits: a relative 2^-9 per value


# Inference sees only plain modules: folding takes plain BatchNorms only, and a network whose kernels were
# removed folds like one that never had them, to the same function.
def test_only_plain_batch_norms_fold() -> None:
    net = _model().eval()
    reference = copy.deepcopy(net)
    assert convert_aligned_rows_batch_norm(net) == count_batchnorm(reference) > 0
    assert list(net.state_dict()) == list(reference.state_dict())
    assert fold_batchnorm(copy.deepcopy(net)) == 0
    assert cpu_kernels.remove_cpu_kernels(net) == count_batchnorm(reference)
    assert fold_batchnorm(net) == count_batchnorm(reference) and count_batchnorm(net) == 0
    x = torch.rand(4, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bf16", [False, True])
def test_aligned_rows_batch_norm_trains_the_same(bf16: bool, data: tuple, monkeypatch) -> None:
    monkeypatch.setattr(AlignedRowsBatchNorm2d, "min_elements", 0)  # every BatchNorm of the small model
    x, y = data
    variant = bm.TrainVariant(True, bf16, space_to_batch=True, aligned_bn=True)
    before = bm.TrainVariant(True, bf16, space_to_batch=True)
    plain = _losses(_model(), before, x, y)
    calls = _count_calls(monkeypatch, _AlignedRowsBatchNorm, "forward")
    fast = _losses(_model(), variant, x, y)
    assert len(calls) == STEPS * count_batchnorm(_model())  # every BatchNorm (12-channel rows: k = 8) of each step
    assert_same_curve(fast, plain, bf16=bf16)
    net, _ = bm.prepare_training(_model(), variant)
    assert sum(type(m) is AlignedRowsBatchNorm2d for m in net.modules()) == count_batchnorm(net) > 0
    audit = bm.audit_conv_weight_grads(_model(), variant, x, y)
    assert audit["ok"] and audit["max_rel_err"] < (0.02 if bf16 else 1e-4)


# ----------------------------------------------------------------------------- the policy
# Nothing changes the environment at import (of the package or of train.py); a command sets a short OpenMP
# spin before torch loads (libgomp reads GOMP_SPINCOUNT once, when torch is first imported), a user's own
# value wins, and LANMSFF_PROCESS_SETUP=0 turns the set-up off.
@pytest.mark.parametrize(
    ("env", "imported", "expected"),
    [
        ({}, "lanmsff", "None"),
        ({}, "train", "10000 True"),
        ({"GOMP_SPINCOUNT": "5"}, "train", "5 True"),
        ({"LANMSFF_PROCESS_SETUP": "0"}, "train", "None False"),
    ],
)
def test_process_set_up_happens_in_the_entry_points_not_at_import(env, imported, expected) -> None:
    from .conftest import ROOT

    # a command (train.py --help: the set-up runs, then the help) against a plain import of the package
    run = "try:\n    train.train()\nexcept SystemExit:\n    pass\n" if imported == "train" else ""
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); import os; import {imported}\n"
        "sys.argv = ['train.py', '--help']\n"
        f"{run}"
        "from lanmsff.runtime.process import allocator_tuned\n"
        "print(os.environ.get('GOMP_SPINCOUNT'), *([allocator_tuned()] if 'train' in sys.modules else []))"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "LANMSFF_PROCESS_SETUP")}
    result = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == expected


def _kernel_classes(net: nn.Module) -> set[str]:
    return {type(m).__name__ for m in net.modules() if type(m) in cpu_kernels.PLAIN_CLASS}


def _fit_one_step(module, precision: str = "32-true") -> dict[str, set[str]]:
    """Fit ``module`` one step on random data; the kernel classes seen in the step, and after the fit."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    seen: dict[str, set[str]] = {}
    original = module.training_step

    def step(batch, batch_idx):
        seen["during"] = _kernel_classes(module.net)
        return original(batch, batch_idx)

    module.training_step = step
    data = TensorDataset(torch.rand(4, 1, 64, 64), torch.tensor([0, 1, 2, 3]), torch.zeros(4, dtype=torch.long))
    trainer = pl.Trainer(
        max_steps=1, accelerator="cpu", precision=precision, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, DataLoader(data, batch_size=4))
    seen["after"] = _kernel_classes(module.net)
    return seen


# FERModule builds the plain network; with cpu_kernels=auto a CPU fit trains with every kernel (6 dilated
# convolutions, 20 BatchNorms, 4 dropouts, 3 PWFS selections of the reference LANMSFF) and hands the plain
# network back when it ends (checkpoints, testing and eval.py see only plain modules).
def test_auto_applies_the_kernels_for_a_cpu_fit_only(monkeypatch) -> None:
    from lanmsff.training import FERModule

    module = FERModule(
        {"_target_": "lanmsff.models.LANMSFF"},
        class_names=list("abcdefg"),
        channels_last=True,
        optimizer={"_target_": "torch.optim.Adam", "lr": 1e-3},
    )
    assert _kernel_classes(module.net) == set()
    seen = _fit_one_step(module)
    assert seen["during"] == {"SpaceToBatchConv2d", "AlignedRowsBatchNorm2d", "MaskDropout", "FusedPWFSSelection"}
    assert module.cpu_kernels_applied == {
        "space_to_batch_conv": 6, "aligned_rows_batch_norm": 20, "mask_dropout": 4, "fused_pwfs": 3,
    }  # fmt: skip
    assert seen["after"] == set()
    assert cpu_kernels.apply_cpu_kernels(module.net, "auto", device="cuda", precision="32-true") == {}


def test_the_kernels_compute_the_training_step_on_sub_grids_and_aligned_rows(monkeypatch) -> None:
    """A training step of the reference LANMSFF under ``auto`` takes both paths: in fp32 the 2 depthwise dilated
    convolutions on sub-grids where torch runs AVX-512 kernels, all 6 where it does not; all 20 BatchNorms once
    their sizes are allowed."""
    net = LANMSFF().to(memory_format=torch.channels_last).train()
    cpu_kernels.apply_cpu_kernels(net, "auto", device="cpu", precision="32-true")
    monkeypatch.setattr(AlignedRowsBatchNorm2d, "min_elements", 0)
    sub_grids = _count_calls(monkeypatch, dilated_conv, "conv2d_space_to_batch")
    aligned = _count_calls(monkeypatch, _AlignedRowsBatchNorm, "forward")
    x = torch.rand(2, 1, 64, 64).contiguous(memory_format=torch.channels_last)
    nn.functional.cross_entropy(net(x), torch.tensor([0, 3])).backward()
    assert len(sub_grids) == (2 if hardware.cpu_runs_avx512() else 6) and len(aligned) == 20
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


# cpu_kernels=off trains the plain modules: in fp32 a training step is the plain eager module's, bit for bit.
def test_off_trains_exactly_the_plain_eager_module() -> None:
    from lanmsff.training import FERModule

    torch.manual_seed(7)
    module = FERModule({"_target_": "lanmsff.models.LANMSFF"}, class_names=list("abcdefg"), cpu_kernels="off")
    torch.manual_seed(7)
    plain = LANMSFF().train()
    assert cpu_kernels.apply_cpu_kernels(module.net, "off", device="cpu", precision="32-true") == {}
    module.train()
    x, y = torch.rand(4, 1, 64, 64), torch.tensor([0, 1, 2, 6])
    torch.manual_seed(3)
    loss = module.training_step((x, y, torch.zeros(4, dtype=torch.long)), 0)
    loss.backward()
    torch.manual_seed(3)
    expected = nn.functional.cross_entropy(plain(x), y)
    expected.backward()
    assert torch.equal(loss.detach(), expected.detach())
    for (name, ours), theirs in zip(module.net.named_parameters(), plain.parameters(), strict=True):
        assert torch.equal(ours.grad, theirs.grad), name


# Under bf16 on a CPU oneDNN's weight gradients of dilated channels-last convolutions are wrong (NaN); with
# cpu_kernels=off the dilated convolutions fall back to NCHW weight gradients, which are right.
def test_off_with_bf16_on_a_cpu_guards_the_dilated_weight_gradients(data: tuple) -> None:
    net = LANMSFF(widths=(12, 12, 12, 12)).to(memory_format=torch.channels_last)
    applied = cpu_kernels.apply_cpu_kernels(net, "off", device="cpu", precision="bf16-mixed")
    assert applied == {"nchw_weight_grad_conv": 6} and _kernel_classes(net) == {"NCHWWeightGradConv2d"}
    x, y = data
    audit = audit_conv_weight_grads(net, x, y, bf16=True)
    assert audit["ok"] and audit["convolutions"] > 6 and audit["max_rel_err"] < 0.02, audit
    assert cpu_kernels.remove_cpu_kernels(net) == 6 and _kernel_classes(net) == set()


def test_an_unknown_policy_is_a_config_error() -> None:
    from lanmsff.errors import ConfigError
    from lanmsff.training import FERModule

    with pytest.raises(ConfigError, match=r"model\.cpu_kernels"):
        FERModule({"_target_": "lanmsff.models.LANMSFF"}, class_names=list("abc"), cpu_kernels="fast")


# ----------------------------------------------------------------------------- element-wise kernels
@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_pooled_pwfs_trains_as_the_composed_ops(memory_format: torch.memory_format) -> None:
    """The fused pooled PWFS (used when training) has the composed ops' value and gradient, in float64."""
    y = torch.randn(3, 30, 6, 4, dtype=torch.float64).contiguous(memory_format=memory_format).requires_grad_()
    weights = torch.randn(3, 10, dtype=torch.float64)
    fused = pooled_pwfs(y)
    composed = pwfs(y).mean(dim=(2, 3))
    torch.testing.assert_close(fused, composed, rtol=0, atol=1e-12)
    (ours,) = torch.autograd.grad((fused * weights).sum(), y)
    (reference,) = torch.autograd.grad((composed * weights).sum(), y)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)
    with torch.no_grad():  # inference runs the composed ops
        assert torch.equal(pooled_pwfs(y), composed)


def test_pooled_pwfs_in_bf16_and_on_ties() -> None:
    torch.manual_seed(0)
    y = torch.relu(torch.randn(4, 66, 8, 8)).contiguous(memory_format=torch.channels_last)  # many tied zeros
    y[:, 22:44] = y[:, :22]  # and ties at non-zero values
    weights = torch.randn(4, 22)
    grads = {}
    for name, fn in {"fused": pooled_pwfs, "composed": lambda t: pwfs(t).mean(dim=(2, 3))}.items():
        leaf = y.clone().requires_grad_()
        torch.testing.assert_close(fn(leaf), pwfs(y.double()).mean(dim=(2, 3)).float(), rtol=1e-5, atol=1e-6)
        (grads[name],) = torch.autograd.grad((fn(leaf) * weights).sum(), leaf)
        low = y.bfloat16().requires_grad_()
        assert fn(low).dtype == torch.bfloat16
        torch.testing.assert_close(fn(low).float(), fn(y).detach(), rtol=0.02, atol=0.02)
    # a tie's gradient goes to one of the tied minima instead of being split: each triple's total is equal
    triples = {name: g.unflatten(1, (3, 22)).sum(1) for name, g in grads.items()}
    torch.testing.assert_close(triples["fused"], triples["composed"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("p", [0.1, 0.4, 0.9])
def test_mask_dropout_drops_at_rate_p_keeps_the_mean_and_the_memory_format(p: float) -> None:
    torch.manual_seed(0)
    x = torch.ones(64, 24, 16, 16).to(memory_format=torch.channels_last).requires_grad_()
    drop = MaskDropout(p).train()
    out = drop(x)
    dropped = (out == 0).double().mean().item()
    assert abs(dropped - p) < 0.005  # 393,216 draws: the standard error is at most 0.0008
    assert torch.allclose(out[out != 0], torch.tensor(1 / (1 - p)))  # inverted dropout, as Keras
    assert out.is_contiguous(memory_format=torch.channels_last)
    out.sum().backward()
    assert torch.allclose(x.grad, (out != 0) / (1 - p))  # gradient flows through the kept units only
    bf16 = drop(torch.ones(8, 4, 4, 4, dtype=torch.bfloat16))
    assert bf16.dtype == torch.bfloat16
    assert torch.equal(drop.eval()(x), x) and torch.equal(MaskDropout(0.0).train()(x), x)
