"""augment_on_device draws the same transforms as the albumentations path, batched with torch ops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lanmsff.data.datamodule import DeviceLoader, FaceDataset, KDEFDataModule
from lanmsff.data.device_augment import CROP, FLIP, ORIGINAL, ROTATE, augment_batch, paper_affine
from lanmsff.data.transforms import train_transform

N = 2000


def _faces(n: int, seed: int = 0) -> np.ndarray:
    """Textured images (no symmetry) so that every variant is recognisable."""
    rng = np.random.default_rng(seed)
    base = np.linspace(40, 220, 64)[None, :] + np.linspace(0, 30, 64)[:, None]
    return np.clip(base[None] + rng.normal(0, 12, (n, 64, 64)), 0, 255).astype(np.uint8)


def _stats(batches: np.ndarray, originals: np.ndarray) -> dict[str, float]:
    same = np.all(np.abs(batches - originals) < 1e-4, axis=(1, 2))
    flipped = np.all(np.abs(batches - originals[:, :, ::-1]) < 1e-4, axis=(1, 2))
    return {
        "original": same.mean(),
        "flip": flipped.mean(),
        "other": 1 - same.mean() - flipped.mean(),
        "black": (batches < 1e-3).mean(),
        "mean": batches.mean(),
        "min": batches.min(),
        "max": batches.max(),
    }


def test_device_path_matches_albumentations_distribution() -> None:
    faces = _faces(N)
    transform = train_transform(64)
    reference = np.stack([transform(image=f)["image"] for f in faces]).astype(np.float32) / 255
    torch.manual_seed(0)
    device = augment_batch(torch.from_numpy(faces).float().div(255).unsqueeze(1)).squeeze(1).numpy()
    originals = faces.astype(np.float32) / 255
    ref, dev = _stats(reference, originals), _stats(device, originals)
    assert device.shape == reference.shape == (N, 64, 64)
    assert dev["min"] >= 0.0 and dev["max"] <= 1.0
    for key in ("original", "flip", "other"):
        assert abs(dev[key] - ref[key]) < 0.05, (key, dev[key], ref[key])
    assert abs(dev["original"] - 0.25) < 0.04 and abs(dev["flip"] - 0.25) < 0.04
    assert abs(dev["black"] - ref["black"]) < 0.01  # rotation corners, as albumentations' black border
    assert abs(dev["mean"] - ref["mean"]) < 0.01


def test_affine_parameters_follow_the_reference() -> None:
    g = torch.Generator().manual_seed(1)
    theta, variant = paper_affine(4000, generator=g)
    counts = torch.bincount(variant, minlength=4).float() / 4000
    assert torch.all((counts - 0.25).abs() < 0.03)
    rot = theta[variant == ROTATE]
    angles = torch.rad2deg(torch.atan2(rot[:, 1, 0], rot[:, 0, 0]))
    assert angles.abs().max() <= 15.0 + 1e-4 and angles.std() > 7  # uniform in [-15, 15]
    scales = torch.linalg.det(rot[:, :, :2]).sqrt()
    assert torch.allclose(scales, torch.full_like(scales, 1 / 1.125), atol=1e-5)
    crop = theta[variant == CROP]
    shifts = crop[:, :, 2] * 72 / 2 + 4  # back to integer offsets in the 72-pixel image
    assert torch.allclose(shifts, shifts.round(), atol=1e-4) and shifts.min() >= 0 and shifts.max() <= 8
    assert torch.equal(
        theta[variant == ORIGINAL][:, :, :2], torch.eye(2).expand(int((variant == ORIGINAL).sum()), 2, 2)
    )
    assert torch.all(theta[variant == FLIP][:, 0, 0] == -1)


def test_device_loader_and_datamodule_hook(tiny_tree: Path, tmp_path: Path) -> None:
    dm = KDEFDataModule(tiny_tree, num_folds=4, face_crop="box", cache_dir=tmp_path, augment_on_device=True)
    dm.setup()
    assert dm.data_train.transform is None  # nothing per image on the CPU
    loader = DeviceLoader(dm.data_train, 32)
    batches = list(loader)
    assert len(batches) == len(loader) and sum(len(b[0]) for b in batches) == len(dm.data_train)
    x, y, g = batches[0]
    assert x.dtype == torch.float32 and x.shape[1:] == (1, 64, 64) and x.min() >= 0 and x.max() <= 1

    class _Trainer:
        training = True

    dm.trainer = _Trainer()
    augmented, *_ = dm.on_after_batch_transfer((x, y, g), 0)
    assert augmented.shape == x.shape and not torch.equal(augmented, x)
    _Trainer.training = False
    same, *_ = dm.on_after_batch_transfer((x, y, g), 0)
    assert torch.equal(same, x)  # validation and test batches are never augmented


def test_device_loader_is_seeded_by_torch() -> None:
    data = FaceDataset(_faces(50), np.arange(50), np.zeros(50, np.int64))
    torch.manual_seed(5)
    first = [b[1].tolist() for b in DeviceLoader(data, 16)]
    torch.manual_seed(5)
    again = [b[1].tolist() for b in DeviceLoader(data, 16)]
    assert first == again and sorted(i for batch in first for i in batch) == list(range(50))


@pytest.mark.slow
def test_training_with_augment_on_device(tmp_path: Path) -> None:
    from .conftest import TINY_TRAIN, run_script

    result = run_script("train.py", *TINY_TRAIN, "data.augment_on_device=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
