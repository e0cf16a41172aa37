"""The Python API (lanmsff.api): pandas tables from photos, arrays and clips; the checkpoint's preprocessing and
temperature; the view filter; devices."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from skimage import data

from lanmsff.api import Predictor
from lanmsff.checkpoints import load_checkpoint, store_temperature, stored_temperature
from lanmsff.errors import ConfigError, UserError
from lanmsff.prediction.photos import default_detector
from lanmsff.records import CHECKPOINT_KEY

from .test_video import FRAMES, clip_frames, write_clip

POSE = ["yaw", "roll", "view", "view_p"]


@pytest.fixture(scope="module")
def predictor(trained_checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(trained_checkpoint, device="cpu", precision="fp32")


def probabilities(table: pd.DataFrame, predictor: Predictor) -> np.ndarray:
    return table[[f"p_{c}" for c in predictor.class_names]].to_numpy(dtype=float)


def changed_checkpoint(
    source: Path, target: Path, *, data: dict | None = None, temperature: float | None = None
) -> Path:
    """A copy of ``source`` whose stored training config has ``data`` merged in, and a stored temperature."""
    checkpoint = load_checkpoint(source)
    checkpoint[CHECKPOINT_KEY]["config"]["data"].update(data or {})
    if temperature is not None:
        store_temperature(checkpoint, temperature)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, target)
    return target


def test_a_photo_gives_one_row_per_face(predictor: Predictor, tmp_path: Path) -> None:
    path = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    table = predictor.predict_image(path)
    assert len(table) == 1
    row = table.iloc[0]
    assert row.file == str(path) and row.detector == default_detector("cnn") and row.view == "S" and abs(row.yaw) < 15
    assert 150 < row.x + row.w / 2 < 280 and 60 < row.y + row.h / 2 < 180  # her face
    probs = probabilities(table, predictor)
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)
    assert row.expression == predictor.class_names[int(probs.argmax())]
    assert row.probability == pytest.approx(probs.max(), abs=1e-6)
    assert row.calibration == "none"  # this run did not calibrate


def test_an_rgb_array_and_the_same_photo_as_bgr_agree(predictor: Predictor) -> None:
    rgb = data.astronaut()
    from_rgb = predictor.predict_image(rgb, rgb=True)
    from_bgr = predictor.predict_image(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert from_rgb.file.tolist() == ["<array>"]
    pd.testing.assert_frame_equal(from_rgb, from_bgr)


def test_no_face_is_an_empty_table_with_the_columns(predictor: Predictor) -> None:
    table = predictor.predict_image(np.full((200, 200, 3), 128, np.uint8))
    assert table.empty
    assert {"x", "w", "view", "expression", "calibration", *(f"p_{c}" for c in predictor.class_names)} <= set(table)


def test_bad_input_is_a_user_error(predictor: Predictor, tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(UserError, match=r"broken\.jpg"):
        predictor.predict_image(tmp_path / "broken.jpg")
    with pytest.raises(UserError, match="uint8 array"):
        predictor.predict_image(np.zeros((10, 10), np.float32))
    with pytest.raises(UserError, match=r"notes\.mp4"):
        (tmp_path / "notes.mp4").write_text("text\n")
        predictor.predict_video(tmp_path / "notes.mp4")


def test_a_clip_gives_one_row_per_face_per_frame(predictor: Predictor, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", clip_frames(FRAMES, face_until=FRAMES // 2))
    table = predictor.predict_video(clip, stride=2)
    analysed_with_face = len(range(0, FRAMES // 2, 2))
    assert table.attrs["frames_read"] == FRAMES
    assert table.attrs["frames_with_faces"] == len(table) == analysed_with_face
    assert table.frame.tolist() == list(range(0, FRAMES // 2, 2))
    assert table.track.unique().tolist() == [1]
    smoothed = table[[f"smoothed_{c}" for c in predictor.class_names]].to_numpy(dtype=float)
    assert (table.expression == [predictor.class_names[i] for i in smoothed.argmax(axis=1)]).all()
    assert table[POSE].notna().all().all()


def test_views_keep_only_faces_of_those_views(trained_checkpoint: Path) -> None:
    frontal = data.astronaut()
    kept = Predictor.from_checkpoint(trained_checkpoint, device="cpu", views=["S", "HL"]).predict_image(frontal)
    dropped = Predictor.from_checkpoint(trained_checkpoint, device="cpu", views=["FL", "FR"]).predict_image(frontal)
    assert len(kept) == 1 and dropped.empty
    with pytest.raises(ConfigError, match="views"):
        Predictor.from_checkpoint(trained_checkpoint, device="cpu", views=["left"])


def test_preprocessing_comes_from_the_checkpoint(trained_checkpoint: Path, tmp_path: Path) -> None:
    haar = {"face_crop": "detect", "face_detector": "haar", "face_align": False, "face_margin": 0.35}
    path = changed_checkpoint(trained_checkpoint, tmp_path / "haar.ckpt", data=haar)
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert (predictor.detector_name, predictor.align, predictor.margin) == ("haar", False, 0.35)
    with pytest.warns(UserWarning, match="detector=cnn differs from the checkpoint's training"):
        overridden = Predictor.from_checkpoint(path, device="cpu", detector="cnn")
    assert (overridden.detector_name, overridden.margin) == ("cnn", 0.35)
    cnn = {**haar, "face_detector": "cnn", "face_align": True}
    path = changed_checkpoint(trained_checkpoint, tmp_path / "cnn.ckpt", data=cnn)
    aligned = Predictor.from_checkpoint(path, device="cpu")
    assert (aligned.detector_name, aligned.align) == (default_detector("cnn"), True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # BlazeFace cuts faces out as MTCNN does: no warning
        Predictor.from_checkpoint(path, device="cpu", detector=default_detector("cnn"))
    with pytest.warns(UserWarning, match="align=False differs"):
        Predictor.from_checkpoint(path, device="cpu", align=False)


def test_a_model_trained_without_detection_gets_the_default_detector(trained_checkpoint: Path, tmp_path: Path) -> None:
    """FER-2013's configs name no detector (their images are face crops): not the cascades of old KDEF runs."""
    data = {"face_crop": "none", "face_detector": "haar"}
    path = changed_checkpoint(trained_checkpoint, tmp_path / "crops.ckpt", data=data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to differ from
        predictor = Predictor.from_checkpoint(path, device="cpu", detector="haar")
    assert predictor.detector_name == "haar"
    assert Predictor.from_checkpoint(path, device="cpu").detector_name == default_detector("cnn")


def test_the_stored_temperature_scales_the_probabilities(trained_checkpoint: Path, tmp_path: Path) -> None:
    path = changed_checkpoint(trained_checkpoint, tmp_path / "calibrated.ckpt", temperature=2.0)
    image = data.astronaut()
    calibrated = Predictor.from_checkpoint(path, device="cpu", precision="fp32")
    raw = Predictor.from_checkpoint(path, device="cpu", precision="fp32", calibrate=False)
    scaled, plain = calibrated.predict_image(image, rgb=True), raw.predict_image(image, rgb=True)
    assert scaled.calibration.tolist() == ["temperature=2"] and plain.calibration.tolist() == ["none"]
    p = probabilities(plain, raw)
    expected = np.sqrt(p) / np.sqrt(p).sum(axis=1, keepdims=True)  # softmax(z / 2) = sqrt(softmax(z)), normalised
    np.testing.assert_allclose(probabilities(scaled, calibrated), expected, atol=1e-5)


def test_the_temperature_of_the_run_folder_applies_only_to_the_tested_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    tested = run / "checkpoints" / "epoch_003.ckpt"
    summary = {"schema_version": 1, "temperature": 1.7, "test_checkpoint": {"choice": "best", "path": str(tested)}}
    (run / "summary.json").write_text(json.dumps(summary))
    assert stored_temperature({}, tested) == 1.7
    assert stored_temperature({}, run / "checkpoints" / "last.ckpt") is None
    assert stored_temperature({CHECKPOINT_KEY: {"temperature": 0.9}}, tested) == 0.9  # the checkpoint's own first


def test_a_device_this_machine_lacks_is_a_config_error(trained_checkpoint: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="device=cuda"):
        Predictor.from_checkpoint(trained_checkpoint, device="cuda")
    with pytest.raises(ConfigError, match="device"):
        Predictor.from_checkpoint(trained_checkpoint, device="tpu")
    assert Predictor.from_checkpoint(trained_checkpoint, device="auto").device.type in ("cpu", "mps")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_predicts_what_the_cpu_predicts(trained_checkpoint: Path) -> None:
    image = data.astronaut()
    cpu = Predictor.from_checkpoint(trained_checkpoint, device="cpu", precision="fp32").predict_image(image)
    cuda = Predictor.from_checkpoint(trained_checkpoint, device="cuda", precision="fp32", batch_size=64)
    on_gpu = cuda.predict_image(image)
    assert on_gpu[["x", "y", "w", "h", "view"]].equals(cpu[["x", "y", "w", "h", "view"]])
    np.testing.assert_allclose(probabilities(on_gpu, cuda), probabilities(cpu, cuda), atol=1e-4)


def test_importing_lanmsff_stays_light() -> None:
    code = "import sys, lanmsff; print(any(m in sys.modules for m in ('torch', 'lanmsff.api', 'pandas')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


@pytest.mark.slow
def test_training_keeps_the_fitted_temperature_inside_the_tested_checkpoint(tmp_path: Path) -> None:
    from .conftest import TINY_TRAIN, run_script

    result = run_script("train.py", *TINY_TRAIN, "calibrate=temperature", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = (tmp_path / "logs" / "train" / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    tested = Path(summary["test_checkpoint"]["path"])
    moved = shutil.copy(tested, tmp_path / "elsewhere.ckpt")  # away from its run folder and summary.json
    assert stored_temperature(load_checkpoint(moved), moved) == pytest.approx(summary["temperature"], rel=1e-5)
