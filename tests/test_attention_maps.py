"""Where the network looks (lanmsff.inference.explain): MassAtt spatial attention, Grad-CAM, and the overlays
``predict.py explain=true`` writes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data
from torch import nn

from lanmsff.api import Predictor
from lanmsff.inference.explain import attention_heatmaps, grad_cam, last_block, overlay
from lanmsff.models.lanmsff import LANMSFF
from lanmsff.prediction import RunOptions, predict_inputs


class Brightness(nn.Module):
    """Class 0's logit is the mean brightness (a 1x1 convolution and ReLU, averaged), class 1's its negative."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.zero_()
            self.head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_grad_cam_lights_up_the_evidence_for_the_class() -> None:
    """A bright square on the left is all the evidence for class 0: Grad-CAM is hot there and nowhere else."""
    net = Brightness().eval()
    x = torch.zeros(1, 1, 32, 32)
    x[..., 8:16, 4:12] = 1.0
    cam = grad_cam(net, last_block(net), x)[0]
    assert cam.shape == (32, 32) and cam.max() == pytest.approx(1.0)
    assert cam[10:14, 6:10].min() > 0.9 and cam[:, 16:].max() == pytest.approx(0.0, abs=1e-6)
    assert grad_cam(net, last_block(net), x, torch.tensor([1])).max() == 0.0  # no evidence for class 1


def test_attention_and_grad_cam_of_lanmsff_cover_the_crop() -> None:
    torch.manual_seed(0)
    net = LANMSFF(num_classes=7, widths=[12, 12, 12, 12]).eval()
    x = torch.rand(3, 1, 64, 64)
    attention = attention_heatmaps(net, x)
    cams = grad_cam(net, last_block(net), x)
    for maps in (attention, cams):
        assert maps.shape == (3, 64, 64) and np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert np.allclose(attention.reshape(3, -1).max(axis=1), 1.0)  # each map scaled by its own peak
    with pytest.raises(ValueError, match="no MassAtt"):
        attention_heatmaps(Brightness().eval(), x)


def test_overlay_is_a_colour_image_of_the_crop() -> None:
    gray = np.full((64, 64), 100, np.uint8)
    heat = np.zeros((64, 64))
    heat[:, 32:] = 1
    image = overlay(gray, heat, side=128)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert image[:, :60, 0].mean() != pytest.approx(image[:, 68:, 0].mean(), abs=5)  # the hot half is coloured


def test_predict_writes_the_overlays_of_each_face(trained_checkpoint: Path, tmp_path: Path) -> None:
    photo = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    predictor = Predictor.from_checkpoint(trained_checkpoint, device="cpu", precision="fp32")
    counts = predict_inputs(predictor, [photo], tmp_path / "out", options=RunOptions(explain=True))
    assert counts["faces"] == 1
    [panel] = sorted((tmp_path / "out" / "explain").iterdir())
    assert panel.name == "astronaut_face0.png"
    image = cv2.imread(str(panel))
    assert image.shape == (192, 3 * 192, 3)  # the crop, MassAtt's attention, Grad-CAM
