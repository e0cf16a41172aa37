"""Where the network looks (lanmsff.inference.explain): MassAtt spatial attention, Grad-CAM, and the overlays
``predict.py explain=true`` writes; their means per view over a test set (lanmsff.inference.attention_maps,
lanmsff.heatmaps) in the run folder and in the comparison report."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from skimage import data
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lanmsff.analysis.loading import load_runs
from lanmsff.analysis.report import write_report
from lanmsff.api import Predictor
from lanmsff.heatmaps import NPZ_FILE, PNG_FILE, PerViewAttention, pooled
from lanmsff.inference.attention_maps import AttentionPerView
from lanmsff.inference.explain import attention_heatmaps, grad_cam, last_block, overlay
from lanmsff.models.blocks import MassAtt
from lanmsff.models.lanmsff import LANMSFF
from lanmsff.prediction import RunOptions, predict_inputs
from lanmsff.training.module import FERModule

from .conftest import compose_config
from .test_compare import make_summary, write


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


# ----------------------------------------------------------------------------- per view over a test set
ANGLES = ["FL", "HL", "S", "HR", "FR"]
CLASSES = ["afraid", "angry", "disgusted", "happy", "neutral", "sad", "surprised"]


def run_test(
    module: pl.LightningModule,
    x: torch.Tensor,
    groups: torch.Tensor,
    out: Path,
    *,
    trainer: dict | None = None,
    **options,
) -> None:
    """``trainer.test`` of ``module`` on ``x`` (batches of 4) with the callback writing into ``out``."""
    labels = torch.zeros(len(x), dtype=torch.long)
    loader = DataLoader(TensorDataset(x, labels, groups), batch_size=4)
    trainer = pl.Trainer(
        **(trainer or {"accelerator": "cpu"}),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[AttentionPerView(out, **options)],
    )
    trainer.test(module, dataloaders=loader, verbose=False)


def check_means_per_view(tmp_path: Path, trainer: dict | None = None, atol: float = 1e-5) -> None:
    """The callback's means per view, read from the test loop's own forward passes (batches that mix views),
    equal the mean of explain's per-face maps of each view's images; views without images are left out."""
    torch.manual_seed(0)
    module = FERModule(
        {"_target_": "lanmsff.models.LANMSFF", "widths": [12, 12, 12, 12]}, class_names=CLASSES, group_names=ANGLES
    )
    x = torch.rand(11, 1, 64, 64)
    groups = torch.tensor([0, 2, 2, 4, 0, 2, 4, 4, 4, 0, 2])  # no HL, no HR
    run_test(module, x, groups, tmp_path, trainer=trainer, grad_cam=True)
    result = PerViewAttention.load(tmp_path / NPZ_FILE)
    assert result.views == ["FL", "S", "FR"] and result.counts.tolist() == [3, 4, 4]
    net = module.net.cpu().float().eval()
    assert all(p.grad is None for p in net.parameters())  # Grad-CAM's backward leaves no gradients behind
    for i, view in enumerate(result.views):
        chosen = x[groups == ANGLES.index(view)]
        assert np.allclose(result.attention[i], attention_heatmaps(net, chosen).mean(axis=0), atol=atol)
        assert np.allclose(result.grad_cam[i], grad_cam(net, last_block(net), chosen).mean(axis=0), atol=atol)
        assert np.allclose(result.faces[i], chosen[:, 0].mean(dim=0).numpy(), atol=1e-6)
    for maps in (result.attention, result.grad_cam, result.faces):
        assert maps.shape == (3, 64, 64) and maps.min() >= 0 and maps.max() <= 1
    assert cv2.imread(str(tmp_path / PNG_FILE)).shape[2] == 3


def test_test_loop_means_per_view_equal_the_maps_of_each_view(tmp_path: Path) -> None:
    check_means_per_view(tmp_path)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_means_per_view_on_a_gpu_in_bf16(tmp_path: Path) -> None:
    """The same on CUDA under bf16 autocast (sums on the device, Grad-CAM's maps brought to the CPU); bf16
    rounding allows 0.03 against the fp32 maps of the CPU."""
    check_means_per_view(tmp_path, {"accelerator": "gpu", "devices": 1, "precision": "bf16-mixed"}, atol=0.03)


class MirrorSpatial(nn.Module):
    """A spatial map that commutes with mirroring: a sigmoid of each pixel's channel mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(6 * (x.mean(dim=1, keepdim=True) - 0.5))


class Probe(pl.LightningModule):
    """A classifier around ``net`` with the attributes the callback reads (``net``, ``group_names``)."""

    def __init__(self, net: nn.Module, group_names: Sequence[str] = ANGLES) -> None:
        super().__init__()
        self.net, self.group_names = net, list(group_names)

    def test_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self.net(batch[0])


def mirror_net() -> nn.Module:
    attention = MassAtt(1, ratio=1)
    attention.spatial = MirrorSpatial()
    return nn.Sequential(attention, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 7))


def test_mirrored_profiles_give_mirrored_mean_maps(tmp_path: Path) -> None:
    """Left profiles (FL) and the same faces mirrored (FR) through a network whose attention commutes with
    mirroring: the FR mean map is the FL one mirrored (not the same map: the faces are not symmetric)."""
    torch.manual_seed(1)
    left = torch.rand(6, 1, 32, 32) * 0.5
    left[..., 8:24, 2:12] += 0.5  # the face's visible half on the left
    x = torch.cat([left, left.flip(-1)])
    groups = torch.tensor([0] * 6 + [4] * 6)
    run_test(Probe(mirror_net()), x, groups, tmp_path)
    result = PerViewAttention.load(tmp_path / NPZ_FILE)
    assert result.views == ["FL", "FR"] and result.counts.tolist() == [6, 6]
    fl, fr = result.attention
    assert np.allclose(fr, fl[:, ::-1], atol=1e-6) and np.allclose(result.faces[1], result.faces[0][:, ::-1])
    assert not np.allclose(fl, fl[:, ::-1], atol=0.05)
    assert fl[8:24, 2:12].mean() > fl[8:24, 20:30].mean() + 0.2  # hot where the face is


def test_data_without_views_is_one_group_and_a_baseline_writes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    x = torch.rand(5, 1, 32, 32)
    run_test(Probe(mirror_net(), group_names=()), x, torch.zeros(5, dtype=torch.long), tmp_path / "no_views")
    result = PerViewAttention.load(tmp_path / "no_views" / NPZ_FILE)
    assert result.views == ["all"] and result.counts.tolist() == [5]
    with caplog.at_level(logging.INFO, logger="lanmsff.inference.attention_maps"):
        run_test(Probe(Brightness()), x, torch.zeros(5, dtype=torch.long), tmp_path / "baseline")
    assert not (tmp_path / "baseline" / "attention").exists()
    assert "Brightness has no MassAtt spatial attention" in caplog.text


def test_train_config_writes_attention_into_the_run_folder_and_can_be_turned_off(tmp_path: Path) -> None:
    for name in ("train", "eval"):
        callback = instantiate(compose_config(name, [], tmp_path).callbacks.attention_maps)
        assert isinstance(callback, AttentionPerView) and callback.dirpath == tmp_path / "run"
        assert not callback.grad_cam
    assert "attention_maps" not in compose_config("train", ["~callbacks.attention_maps"], tmp_path).callbacks


def test_a_training_run_writes_the_mean_attention_of_every_view(trained_checkpoint: Path) -> None:
    """train.py's run folder (the session's one-epoch run): a mean map per KDEF view, counts equal to the
    test images of each view in predictions.csv."""
    run = trained_checkpoint.parents[1]
    result = PerViewAttention.load(run / NPZ_FILE)
    per_view = pd.read_csv(run / "predictions.csv")["group"].value_counts()
    assert result.views == ANGLES
    assert result.counts.tolist() == [int(per_view[v]) for v in ANGLES] == [28] * 5
    assert result.attention.shape == result.faces.shape == (5, 64, 64) and result.grad_cam is None
    assert result.attention.min() >= 0 and result.attention.max() <= 1
    assert cv2.imread(str(run / PNG_FILE)) is not None


def test_pooled_runs_weigh_each_view_by_its_images() -> None:
    ones, zeros = np.ones((2, 4, 4)), np.zeros((2, 4, 4))
    a = PerViewAttention(["FL", "S"], np.array([1, 2]), ones, zeros)
    b = PerViewAttention(["S", "FR"], np.array([6, 5]), zeros, ones)
    both = pooled([a, b])
    assert both.views == ["FL", "S", "FR"] and both.counts.tolist() == [1, 8, 5]
    assert both.attention[:, 0, 0].tolist() == [1.0, 0.25, 0.0] and both.faces[:, 0, 0].tolist() == [0.0, 0.75, 1.0]


def test_the_report_shows_attention_per_view_for_the_variants_that_have_it(tmp_path: Path) -> None:
    logs = tmp_path / "logs" / "study" / "multiruns" / "t"
    heat = np.zeros((5, 16, 16))
    heat[:, :, :8] = 1  # every view: the left half hot
    record = PerViewAttention(ANGLES, np.full(5, 28), heat, np.full((5, 16, 16), 0.5))
    for job, (variant, fold) in enumerate([(v, f) for v in ("lanmsff", "resnet18") for f in (0, 1)]):
        summary = make_summary("study", variant, fold, 0.8)
        write(logs / str(job), summary)
        if variant == "lanmsff":
            record.save(logs / str(job) / NPZ_FILE)
    paths = write_report(load_runs([tmp_path / "logs"]), tmp_path / "report")
    figure = tmp_path / "report" / "figures" / "study" / "attention_per_view.png"
    assert paths["figures/study/attention_per_view.png"] == figure and cv2.imread(str(figure)) is not None
    markdown = paths["report.md"].read_text()
    assert "figures/study/attention_per_view.png" in markdown
    assert "over the test images of 2 runs" in markdown and "no attention maps: resnet18" in markdown
    for job in (0, 1):
        (logs / str(job) / NPZ_FILE).unlink()
    paths = write_report(load_runs([tmp_path / "logs"]), tmp_path / "report_without")
    assert "attention_per_view" not in paths["report.md"].read_text()
    assert not any("attention" in key for key in paths)


def test_the_report_draws_attention_without_loading_torch() -> None:
    code = "import sys, lanmsff.analysis.report; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
