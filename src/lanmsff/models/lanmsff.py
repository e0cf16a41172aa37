"""The LANMSFF network (Ezati et al., arXiv 2403.14318) and its ablation knobs.

With default arguments the network is the authors' Keras reference: 356,294 trainable parameters
for 7 classes (356,451 for 8) plus 2,112 BatchNorm running statistics, about 0.30 GMACs per 64x64
grayscale image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lanmsff.errors import ConfigError, check_choice
from lanmsff.models.blocks import (
    ATTENTION_MODES,
    BN_MOMENTUM,
    SELECTION_MODES,
    ConvBN,
    FeatureSelection,
    MassAtt,
    TwoPathBlock,
    keras_glorot_uniform_,
)

REFERENCE_WIDTHS = (66, 72, 78, 84)
ALL_BLOCKS = (1, 2, 3, 4)


class ConvBlock(nn.Sequential):
    """Blocks 1 and 3: Conv3x3-BN-ReLU, SepConv3x3-BN-ReLU, Conv3x3-BN, MaxPool2, ReLU, Dropout."""

    def __init__(self, in_channels: int, width: int, dropout: float) -> None:
        super().__init__(
            ConvBN(in_channels, width),
            ConvBN(width, width, separable=True),
            ConvBN(width, width, relu=False),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )


class AttentionBlock(nn.Sequential):
    """Blocks 2 and 4: two-path block, MassAtt, Conv1x1-BN, MaxPool2, ReLU, Dropout."""

    def __init__(self, in_channels: int, width: int, dropout: float, *, attention: str, l_dilation: int) -> None:
        super().__init__(
            TwoPathBlock(in_channels, width, l_dilation=l_dilation),
            MassAtt(width, mode=attention) if attention != "none" else nn.Identity(),
            ConvBN(width, width, kernel_size=1, relu=False),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )


class LANMSFF(nn.Module):
    """Lightweight Attention-based Network via Multi-Scale Feature Fusion.

    Args:
        num_classes: number of expression classes (7 for KDEF and FER-2013, 8 for FERPlus).
        in_channels: input channels (1 = grayscale as in the paper).
        image_size: input height and width; a multiple of 32 when a spatial attention map is used
            (the MassAtt spatial path halves block 4's ``image_size / 8`` map twice), else of 16.
        widths: output channels of blocks 1-4. All even; those of fused blocks 1-3 divisible by 3
            when a selection rule reduces them.
        dropout: dropout rate at the end of every block.
        attention: ``massatt`` (reference), ``channel``, ``spatial`` or ``none`` in blocks 2 and 4.
        selection: reduction of blocks 1-3 before fusion: ``pwfs`` (reference), ``max``, ``mean``
            (each C -> C/3) or ``none`` (fuse full block outputs).
        fusion_blocks: which block outputs are pooled and fused (reference: all four).
        dilated_path: ``False`` gives the L path of the two-path blocks dilation 1 instead of 2.
        bn_momentum: BatchNorm running-statistics momentum in PyTorch's convention (weight of the
            new batch). The default 0.01 is Keras' 0.99; it needs several hundred steps before the
            running statistics forget their initial values, so short runs use 0.1.
    """

    def __init__(
        self,
        *,
        num_classes: int = 7,
        in_channels: int = 1,
        image_size: int = 64,
        widths: Sequence[int] = REFERENCE_WIDTHS,
        dropout: float = 0.4,
        attention: str = "massatt",
        selection: str = "pwfs",
        fusion_blocks: Sequence[int] = ALL_BLOCKS,
        dilated_path: bool = True,
        bn_momentum: float = BN_MOMENTUM,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        fusion_blocks = tuple(sorted({int(b) for b in fusion_blocks}))
        _validate(num_classes, in_channels, image_size, widths, dropout, attention, selection, fusion_blocks)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        self.fusion_blocks = fusion_blocks

        self.blocks = nn.ModuleList()
        prev = in_channels
        for index, width in enumerate(widths, start=1):
            if index % 2:
                block: nn.Module = ConvBlock(prev, width, dropout)
            else:
                block = AttentionBlock(prev, width, dropout, attention=attention, l_dilation=2 if dilated_path else 1)
            self.blocks.append(block)
            prev = width
        # Blocks 1-3 are reduced before fusion; block 4 is fused as it is.
        self.selections = nn.ModuleDict(
            {str(b): FeatureSelection(selection if b != 4 else "none") for b in fusion_blocks}
        )
        self.num_features = sum(
            FeatureSelection.out_channels(self.selections[str(b)].mode, widths[b - 1]) for b in fusion_blocks
        )
        self.classifier = nn.Linear(self.num_features, num_classes)
        keras_glorot_uniform_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)
        if not 0.0 < bn_momentum <= 1.0:
            raise ConfigError(f"bn_momentum={bn_momentum} must lie in (0, 1]")
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = bn_momentum

    def forward_blocks(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of the four blocks (before selection and pooling)."""
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        return outputs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The fused multi-scale descriptor, shape ``(B, num_features)``: already pooled.

        Unlike timm's ``forward_features`` (the last feature map, unpooled), this pools each fused
        block's selected map and concatenates them; :meth:`forward_blocks` gives the unpooled maps.
        ``forward_head(forward_features(x), pre_logits=True)`` is the descriptor for timm models too.
        """
        outputs = self.forward_blocks(x)
        pooled = [self.selections[str(b)].pooled(outputs[b - 1]) for b in self.fusion_blocks]
        return torch.cat(pooled, dim=1)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Classifier on the fused descriptor; ``pre_logits=True`` returns the descriptor unchanged."""
        return features if pre_logits else self.classifier(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (the reference's softmax is folded into the loss)."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier


def _validate(
    num_classes: int,
    in_channels: int,
    image_size: int,
    widths: tuple[int, ...],
    dropout: float,
    attention: str,
    selection: str,
    fusion_blocks: tuple[int, ...],
) -> None:
    """Fail at construction, naming the parameter, for any setting the network cannot take."""
    check_choice("attention", attention, ATTENTION_MODES)
    check_choice("selection", selection, SELECTION_MODES)
    if num_classes < 1:
        raise ConfigError(f"num_classes={num_classes} must be at least 1")
    if in_channels < 1:
        raise ConfigError(f"in_channels={in_channels} must be at least 1")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout={dropout} must lie in [0, 1)")
    if len(widths) != 4 or any(w < 2 or w % 2 for w in widths):
        raise ConfigError(
            f"widths={list(widths)} must be four positive even channel counts "
            "(the two-path blocks split their input and output in halves), e.g. [66, 72, 78, 84]"
        )
    if not fusion_blocks or not set(fusion_blocks) <= set(ALL_BLOCKS):
        raise ConfigError(f"fusion_blocks={list(fusion_blocks)} must be a non-empty subset of {list(ALL_BLOCKS)}")
    if selection != "none":
        bad = [f"block {b}: {widths[b - 1]}" for b in fusion_blocks if b != 4 and widths[b - 1] % 3]
        if bad:
            raise ConfigError(
                f"widths: selection={selection!r} splits each fused block 1-3 into three channel groups, "
                f"so their widths must be divisible by 3 ({', '.join(bad)})"
            )
    multiple = 32 if attention in ("massatt", "spatial") else 16
    if image_size < multiple or image_size % multiple:
        reason = (
            "the MassAtt spatial path halves block 4's (image_size / 8) map twice and must restore its size"
            if multiple == 32
            else "the four 2x2 max-pools must divide it evenly"
        )
        raise ConfigError(f"image_size={image_size} is not supported: {reason}; use a multiple of {multiple} (e.g. 64)")
