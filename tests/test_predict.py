"""predict.py on real photographs (public-domain images shipped in scikit-image) and on hostile files."""

from __future__ import annotations

import io
import json
import os
import random
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lanmsff.prediction.photos import default_detector

from .conftest import run_script

EXPRESSIONS = ["afraid", "angry", "disgusted", "happy", "neutral", "sad", "surprised"]
ASTRONAUT_FACE = (179, 58, 90, 118)  # Eileen Collins' face in skimage.data.astronaut(), (x, y, w, h), checked by eye


def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header declaring a huge image, with almost no data (a decompression bomb)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every accepted format, EXIF rotation, a large image, and every kind of hostile file."""
    folder = tmp_path_factory.mktemp("photos")
    bgr = astronaut_bgr()
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(folder / "astronaut.jpg"), bgr)
    cv2.imwrite(str(folder / "gray.png"), gray)
    cv2.imwrite(str(folder / "deep16.png"), gray.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "alpha.png"), cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(folder / "bitmap.bmp"), bgr)
    cv2.imwrite(str(folder / "web.webp"), bgr)
    cv2.imwrite(str(folder / "large.jpg"), cv2.resize(bgr, (4096, 4096), interpolation=cv2.INTER_CUBIC))
    cv2.imwrite(str(folder / "à bientôt photo.jpg"), bgr)  # spaces and non-ASCII
    # stored rotated by 90 degrees, with EXIF saying how to turn it upright
    rotated = Image.fromarray(cv2.cvtColor(cv2.rotate(bgr, cv2.ROTATE_90_COUNTERCLOCKWISE), cv2.COLOR_BGR2RGB))
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(folder / "exif_rotated.jpg", exif=exif)
    cv2.imwrite(str(folder / "no_face.png"), np.full((300, 300, 3), 128, np.uint8))
    data = (folder / "astronaut.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "noise.jpg").write_bytes(random.Random(1).randbytes(4000))
    (folder / "bad_header.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40 + data[200:])
    (folder / "bomb.png").write_bytes(png_bomb(100_000, 100_000))
    (folder / "notes.txt").write_text("not an image\n")
    os.symlink("loop.jpg", folder / "loop.jpg")  # a symlink pointing at itself
    os.symlink(".", folder / "subdir_loop")  # a folder symlink loop (not followed)
    return folder


@pytest.fixture(scope="module")
def predicted(trained_checkpoint: Path, photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("predict_out")
    result = run_script(
        "predict.py",
        f"ckpt_path={trained_checkpoint}",
        f"input={photos}",
        f"output={out}",
        "save_annotated=true",
        cwd=out,
    )
    table = pd.read_csv(out / "predictions.csv")
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    return {"result": result, "table": table, "lines": lines, "out": out}


def _rows(predicted: dict, name: str) -> pd.DataFrame:
    table = predicted["table"]
    return table[table.file.map(lambda f: Path(f).name) == name]


@pytest.mark.slow
def test_faces_are_found_where_they_are(predicted: dict) -> None:
    assert predicted["result"].returncode == 0, predicted["result"].stderr[-2000:]
    [face] = _rows(predicted, "astronaut.jpg").itertuples()
    x, y, w, h = ASTRONAUT_FACE
    assert abs(face.x + face.w / 2 - (x + w / 2)) < 20 and abs(face.y + face.h / 2 - (y + h / 2)) < 20
    assert 0.7 < face.w / w < 1.4 and face.detector == default_detector("cnn") and face.score > 0.9
    assert x < face.left_eye_x < face.nose_x < face.right_eye_x < x + w and face.left_eye_y < face.mouth_left_y
    probs = [getattr(face, f"p_{e}") for e in EXPRESSIONS]
    assert len(probs) == 7 and sum(probs) == pytest.approx(1.0, abs=1e-4) and face.expression in EXPRESSIONS


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["gray.png", "deep16.png", "alpha.png", "bitmap.bmp", "web.webp", "large.jpg", "à bientôt photo.jpg"]
)
def test_every_format_is_read(predicted: dict, name: str) -> None:
    rows = _rows(predicted, name)
    assert len(rows) >= 1 and rows.problem.isna().all(), rows
    if name == "large.jpg":  # 8x the original: downscaled for detection, boxes in full-size coordinates
        face = rows.iloc[0]
        assert abs(face.x + face.w / 2 - 8 * (179 + 90 / 2)) < 160 and abs(face.left_eye_x - 8 * 204) < 80


@pytest.mark.slow
def test_exif_orientation_is_honoured(predicted: dict) -> None:
    [face] = _rows(predicted, "exif_rotated.jpg").itertuples()
    assert abs(face.x + face.w / 2 - (179 + 90 / 2)) < 20 and abs(face.y + face.h / 2 - (58 + 118 / 2)) < 20


@pytest.mark.slow
def test_hostile_files_are_reported_not_dropped(predicted: dict, photos: Path) -> None:
    reasons = {
        "truncated.jpg": "truncated JPEG",
        "empty.jpg": "zero-byte file",
        "noise.jpg": "not a decodable image",
        "bad_header.jpg": "not a decodable image",
        "bomb.png": "too large to decode",
        "notes.txt": "not a decodable image",
        "loop.jpg": "cannot be read",
        "no_face.png": "no face found",
    }
    for name, reason in reasons.items():
        [row] = _rows(predicted, name).itertuples()
        assert reason in row.problem, (name, row.problem)
    listed = {Path(f).name for f in predicted["table"].file}
    assert listed == {p.name for p in photos.iterdir() if p.name != "subdir_loop"}  # every file accounted for
    assert (
        "17 files: 9 with faces" in predicted["result"].stdout
        and "1 without a face, 7 unusable" in predicted["result"].stdout
    )


@pytest.mark.slow
def test_jsonl_and_annotated_copies(predicted: dict) -> None:
    faces = [line for line in predicted["lines"] if line["problem"] is None]
    assert len(faces) == len(predicted["table"].dropna(subset=["expression"]))
    assert all(set(EXPRESSIONS) <= {k[2:] for k in line if k.startswith("p_")} for line in faces)
    annotated = sorted(p.name for p in (predicted["out"] / "annotated").iterdir())
    assert "astronaut.jpg" in annotated and len(annotated) == 9
    image = cv2.imread(str(predicted["out"] / "annotated" / "astronaut.jpg"))
    assert image.shape == (512, 512, 3)


@pytest.mark.slow
def test_no_usable_file_exits_2(trained_checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.jpg").write_bytes(b"")
    cv2.imwrite(str(tmp_path / "in" / "flat.png"), np.zeros((64, 64), np.uint8))
    result = run_script("predict.py", f"ckpt_path={trained_checkpoint}", f"input={tmp_path / 'in'}", cwd=tmp_path)
    assert result.returncode == 2 and "2 files: 0 with faces" in result.stdout
    assert "no face was classified" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_wrong_checkpoints_are_refused_clearly(trained_checkpoint: Path, photos: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "model.ckpt"
    bogus.write_bytes(b"PK\x03\x04 not a checkpoint")
    result = run_script("predict.py", f"ckpt_path={bogus}", f"input={photos / 'astronaut.jpg'}", cwd=tmp_path)
    assert result.returncode == 2 and "not a loadable PyTorch checkpoint" in result.stderr
    result = run_script(
        "predict.py",
        f"ckpt_path={trained_checkpoint}",
        f"input={photos / 'astronaut.jpg'}",
        "expect_classes=8",
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "classifies 7 classes" in result.stderr and "Traceback" not in result.stderr
    result = run_script(
        "predict.py", f"ckpt_path={trained_checkpoint}", f"input={tmp_path / 'nothing*.jpg'}", cwd=tmp_path
    )
    assert result.returncode == 2 and "no file matches it" in result.stderr


def test_in_memory_png_variants_decode() -> None:
    from lanmsff.data.faces import decode_image

    gray = np.tile(np.arange(64, dtype=np.uint8), (32, 1))
    for image in (gray, gray.astype(np.uint16) * 257, np.dstack([gray, gray, gray, np.full_like(gray, 255)])):
        _, data = cv2.imencode(".png", image)
        decoded = decode_image(data.tobytes(), color=True)
        assert decoded.shape == (32, 64, 3) and decoded.dtype == np.uint8
        assert np.abs(decoded[..., 0].astype(int) - gray).max() <= 1
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, "WEBP")
    assert decode_image(buf.getvalue()).shape == (32, 64)


def test_unknown_backend_is_a_user_error(trained_checkpoint: Path, tmp_path: Path) -> None:
    image = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(image), astronaut_bgr())
    result = run_script("predict.py", f"ckpt_path={trained_checkpoint}", f"input={image}", "backend=tvm", cwd=tmp_path)
    assert result.returncode == 2
    assert "backend='tvm' is not valid; allowed values: 'eager', 'jit', 'compile'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_standard_output_holds_only_the_summary_line(predicted: dict) -> None:
    lines = predicted["result"].stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("17 files: ") and "results in" in lines[0], lines


@pytest.mark.slow
def test_haar_detector_flip_tta_and_no_alignment(trained_checkpoint: Path, tmp_path: Path) -> None:
    image = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(image), astronaut_bgr())
    args = (f"ckpt_path={trained_checkpoint}", f"input={image}")
    plain = run_script("predict.py", *args, f"output={tmp_path / 'plain'}", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr[-2000:]
    aligned = pd.read_csv(tmp_path / "plain" / "predictions.csv")
    options = ("detector=haar", "align=false", "tta=flip_shift", f"output={tmp_path / 'haar'}")
    result = run_script("predict.py", *args, *options, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    [face] = pd.read_csv(tmp_path / "haar" / "predictions.csv").itertuples()
    assert face.detector == "frontal" and pd.isna(face.score) and pd.isna(face.left_eye_x)
    assert sum(getattr(face, f"p_{e}") for e in EXPRESSIONS) == pytest.approx(1.0, abs=1e-4)
    assert aligned.detector.tolist() == [default_detector("cnn")]
    assert result.stdout.startswith("1 files: 1 with faces (1 faces)")
