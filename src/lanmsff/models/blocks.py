"""Building blocks of LANMSFF, faithful to the authors' Keras reference (github AE-1129/LANMSFF).

Conventions that make the port exact:

* every convolution has a bias (Keras ``use_bias=True``) and is followed by BatchNorm with
  ``eps=1e-3`` and ``momentum=0.01`` (Keras' 0.99 moving-average factor);
* weights are initialised as Keras does (:func:`keras_he_uniform_`, :func:`keras_glorot_uniform_`),
  with Keras' fan computation, and biases are zero;
* the strided convolutions of the MassAtt spatial path use TensorFlow's ``'same'`` padding
  (:class:`TFSameConv2d`, :class:`TFSameConvTranspose2d`), which is asymmetric.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lanmsff.errors import check_choice

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # PyTorch's momentum is 1 - Keras' momentum (0.99)

ATTENTION_MODES = ("massatt", "channel", "spatial", "none")
SELECTION_MODES = ("pwfs", "none", "max", "mean")


# ----------------------------------------------------------------------------- initialisation
def _keras_fans(weight: torch.Tensor) -> tuple[int, int]:
    """Fan-in and fan-out as Keras computes them for the equivalent Keras kernel.

    Keras stores a conv kernel as ``(kh, kw, in, out)`` and a transposed conv kernel as
    ``(kh, kw, out, in)``; PyTorch's ``(out, in, kh, kw)`` and ``(in, out, kh, kw)`` map onto them so
    that in both cases fan-in is ``shape[1] * kh * kw`` and fan-out ``shape[0] * kh * kw``. A depthwise
    kernel is different (Keras ``(kh, kw, C, 1)`` gives fan-in ``kh * kw * C``) and is passed explicitly.
    """
    receptive = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def keras_he_uniform_(weight: torch.Tensor, *, fan_in: int | None = None) -> torch.Tensor:
    """In-place ``he_uniform``: U(-sqrt(6 / fan_in), sqrt(6 / fan_in))."""
    fan_in = fan_in if fan_in is not None else _keras_fans(weight)[0]
    bound = math.sqrt(6.0 / fan_in)
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def keras_glorot_uniform_(weight: torch.Tensor) -> torch.Tensor:
    """In-place ``glorot_uniform`` (Keras' default kernel initialiser)."""
    fan_in, fan_out = _keras_fans(weight)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return weight.uniform_(-bound, bound)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm2d with Keras' defaults."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def conv2d(in_channels: int, out_channels: int, kernel_size: int = 3, *, dilation: int = 1) -> nn.Conv2d:
    """Stride-1 ``'same'`` convolution with bias, ``he_uniform`` weights and zero bias."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, padding=dilation * (kernel_size - 1) // 2, dilation=dilation
    )
    keras_he_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


# ----------------------------------------------------------------------------- convolutions
class SeparableConv2d(nn.Module):
    """Keras ``SeparableConv2D``: bias-free depthwise conv, then a 1x1 pointwise conv with bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, dilation: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            padding=dilation * (kernel_size - 1) // 2,
            dilation=dilation,
            groups=in_channels,
            bias=False,
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)
        keras_he_uniform_(self.depthwise.weight, fan_in=kernel_size * kernel_size * in_channels)
        keras_he_uniform_(self.pointwise.weight)
        nn.init.zeros_(self.pointwise.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ConvBN(nn.Sequential):
    """Conv (plain or depthwise-separable) -> BatchNorm -> optional ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        dilation: int = 1,
        separable: bool = False,
        relu: bool = True,
    ) -> None:
        conv_cls = SeparableConv2d if separable else conv2d
        layers: list[nn.Module] = [
            conv_cls(in_channels, out_channels, kernel_size, dilation=dilation),
            batch_norm(out_channels),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def _tf_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow's ``'same'`` for one spatial dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class TFSameConv2d(nn.Conv2d):
    """Strided convolution with TensorFlow ``'same'`` padding (extra row/column at the bottom/right)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 2) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)
        keras_he_uniform_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = _tf_same_pads(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = _tf_same_pads(x.shape[-1], self.kernel_size[1], self.stride[1])
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class TFSameConvTranspose2d(nn.ConvTranspose2d):
    """Transposed convolution with TensorFlow ``'same'`` padding: output size = input size * stride.

    TensorFlow crops ``kernel - stride`` rows/columns from the unpadded output, the smaller half
    at the top/left; for a 3x3 kernel with stride 2 it keeps the first ``2n`` rows/columns.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 2) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)
        keras_glorot_uniform_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        h, w = x.shape[-2] * self.stride[0], x.shape[-1] * self.stride[1]
        y = super().forward(x)
        top = max(self.kernel_size[0] - self.stride[0], 0) // 2
        left = max(self.kernel_size[1] - self.stride[1], 0) // 2
        return y[..., top : top + h, left : left + w]


# ----------------------------------------------------------------------------- two-path block
def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """ShuffleNet channel shuffle, identical to the reference's NHWC reshape/transpose."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class TwoPathBlock(nn.Module):
    """The reference's two-path block: a high-resolution (H) and a dilated, low-resolution (L) path.

    Channel shuffle, split in halves; stage 1 runs H (dilation 1) on the first half and L (dilation
    ``l_dilation``) on the second; stages 2 (depthwise-separable) and 3 (plain) run both paths on the
    full concatenation. Every conv has ``out_channels / 2`` filters and is followed by BN + ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, *, l_dilation: int = 2) -> None:
        super().__init__()
        if in_channels % 2 or out_channels % 2:
            raise ValueError(f"TwoPathBlock needs even channel counts (got in={in_channels}, out={out_channels})")
        half_in, half_out = in_channels // 2, out_channels // 2
        self.h1 = ConvBN(half_in, half_out)
        self.l1 = ConvBN(half_in, half_out, dilation=l_dilation)
        self.h2 = ConvBN(out_channels, half_out, separable=True)
        self.l2 = ConvBN(out_channels, half_out, dilation=l_dilation, separable=True)
        self.h3 = ConvBN(out_channels, half_out)
        self.l3 = ConvBN(out_channels, half_out, dilation=l_dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        high, low = channel_shuffle(x, 2).chunk(2, dim=1)
        x = torch.cat([self.h1(high), self.l1(low)], dim=1)
        x = torch.cat([self.h2(x), self.l2(x)], dim=1)
        return torch.cat([self.h3(x), self.l3(x)], dim=1)


# ----------------------------------------------------------------------------- MassAtt
class ChannelAttention(nn.Module):
    """Squeeze-and-excitation map: sigmoid(FC(C -> C)(ReLU(FC(C -> C/ratio)(GAP(x))))), shape (B, C, 1, 1)."""

    def __init__(self, channels: int, ratio: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // ratio)
        self.fc2 = nn.Linear(channels // ratio, channels)
        for fc in (self.fc1, self.fc2):
            keras_glorot_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3))
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return s[:, :, None, None]


class SpatialAttention(nn.Module):
    """Encoder-decoder spatial map on the channel mean, shape (B, 1, H, W), values in (0, 1).

    Two stride-2 convs (2 and 4 filters, ReLU) then two stride-2 transposed convs (4 filters ReLU,
    1 filter sigmoid), all with TensorFlow ``'same'`` padding; H and W must be divisible by 4.
    """

    def __init__(self) -> None:
        super().__init__()
        self.down1 = TFSameConv2d(1, 2)
        self.down2 = TFSameConv2d(2, 4)
        self.up1 = TFSameConvTranspose2d(4, 4)
        self.up2 = TFSameConvTranspose2d(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=1, keepdim=True)
        m = F.relu(self.down2(F.relu(self.down1(m))))
        return torch.sigmoid(self.up2(F.relu(self.up1(m))))


class MassAtt(nn.Module):
    """Mixed attention: ``x * channel_map * spatial_map`` (``mode`` drops either map for ablations).

    The maps pass through the identity taps ``channel_tap`` and ``spatial_tap``; a forward hook on a
    tap (see :func:`lanmsff.models.capture_attention`) reads them without changing the forward code.
    """

    def __init__(self, channels: int, ratio: int = 4, *, mode: str = "massatt") -> None:
        super().__init__()
        check_choice("attention", mode, ATTENTION_MODES[:3])
        self.mode = mode
        self.channel = ChannelAttention(channels, ratio) if mode in ("massatt", "channel") else None
        self.spatial = SpatialAttention() if mode in ("massatt", "spatial") else None
        self.channel_tap = nn.Identity()
        self.spatial_tap = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.channel is not None:
            out = out * self.channel_tap(self.channel(x))
        if self.spatial is not None:
            out = out * self.spatial_tap(self.spatial(x))
        return out


# ----------------------------------------------------------------------------- feature selection
def pwfs(x: torch.Tensor) -> torch.Tensor:
    """Parameter-free PWFS: mean of the element-wise max and median of three channel groups.

    Of three values, max + median = sum - min, so the mean of max and median is computed as
    ``(a + b + c - min(a, b, c)) / 2``: the same function and the same gradient (the max's terms
    cancel) with half the element-wise comparisons.
    """
    a, b, c = x.chunk(3, dim=1)
    return 0.5 * (a + b + c - torch.minimum(torch.minimum(a, b), c))


class FeatureSelection(nn.Module):
    """Reduce a block output before fusion: ``pwfs`` (reference), ``max``, ``mean`` (C -> C/3) or ``none``."""

    def __init__(self, mode: str = "pwfs") -> None:
        super().__init__()
        check_choice("selection", mode, SELECTION_MODES)
        self.mode = mode

    @staticmethod
    def out_channels(mode: str, channels: int) -> int:
        return channels if mode == "none" else channels // 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return x
        if self.mode == "pwfs":
            return pwfs(x)
        groups = torch.stack(x.chunk(3, dim=1), dim=0)
        return groups.amax(dim=0) if self.mode == "max" else groups.mean(dim=0)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """``self(x).mean(dim=(2, 3))``: the selection's spatial average, shape ``(B, out_channels)``."""
        return self(x).mean(dim=(2, 3))

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
