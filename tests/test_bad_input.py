"""Hostile files in a KDEF data root: every one is skipped and reported; nothing crashes, hangs or vanishes."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .test_predict import png_bomb


@pytest.fixture(scope="module")
def hostile_root(tiny_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile") / "KDEF_and_AKDEF"
    shutil.copytree(tiny_tree / "KDEF_and_AKDEF", root)
    kdef = root / "KDEF"
    good = (kdef / "AF01" / "AF01ANS.JPG").read_bytes()
    (kdef / "AF01" / "AF01AFS.JPG").write_bytes(good[: len(good) // 2])  # truncated
    (kdef / "AF01" / "AF01DIS.JPG").write_bytes(b"")  # zero bytes
    (kdef / "AF01" / "AF01HAS.JPG").write_bytes(random.Random(2).randbytes(3000))  # random bytes
    (kdef / "AF01" / "AF01NES.JPG").write_bytes(b"\xff\xd8\xff\xdb" + b"\x13" * 60 + good[300:])  # corrupt header
    (kdef / "AF01" / "AF01SAS.JPG").write_bytes(png_bomb(60_000, 60_000))  # decompression bomb named as a photo
    (kdef / "AF01" / "AF01 SU S.JPG").write_bytes(good)  # spaces
    (kdef / "AF01" / "AF01SUSé.JPG").write_bytes(good)  # non-ASCII
    os.symlink("AF01ANHL.JPG.loop", kdef / "AF01" / "AF01ANHL.JPG.loop")
    (kdef / "AF01" / "AF01ANHL.JPG").unlink()
    os.symlink("AF01ANHL.JPG", kdef / "AF01" / "AF01ANHL.JPG")  # points at itself
    os.symlink("..", kdef / "AF02" / "up")  # a folder loop
    os.symlink("AF02", kdef / "AF03")  # a session folder that is a symlink: followed once, no loop
    return root


def test_every_hostile_file_is_skipped_with_its_reason(hostile_root: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lanmsff.data.cli", "check", str(hostile_root), "--json", "--face-crop", "box"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    expected = {
        "AF01/AF01AFS.JPG": "truncated JPEG (no end-of-image marker)",
        "AF01/AF01DIS.JPG": "zero-byte file",
        "AF01/AF01HAS.JPG": "not a decodable image",
        "AF01/AF01NES.JPG": "not a decodable image",
        "AF01/AF01SAS.JPG": "declares an image too large to decode",
        "AF01/AF01 SU S.JPG": "file name does not follow the KDEF grammar",
        "AF01/AF01SUSé.JPG": "file name does not follow the KDEF grammar",
        "AF01/AF01ANHL.JPG": "cannot be read (Too many levels of symbolic links)",
        "AF01/AF01ANHL.JPG.loop": "cannot be read (Too many levels of symbolic links)",
        "AF02/up": "not a regular file",
    }
    for file, reason in expected.items():
        assert reasons.get(file, "").startswith(reason), (file, reasons.get(file))
    # AF03 is AF02's files under another folder name: each is reported, none is used twice
    assert all(
        reasons[f"AF03/{p.name}"].startswith("belongs to folder AF02")
        for p in (hostile_root / "KDEF/AF02").glob("*.JPG")
    )
    on_disk = sum(1 for folder in (hostile_root / "KDEF").iterdir() for _ in folder.iterdir())
    assert report["images"] + len(report["skipped"]) == on_disk  # nothing silently dropped
    assert report["images"] == 280 - 6


def test_training_data_module_survives_the_same_root(hostile_root: Path, tmp_path: Path) -> None:
    from lanmsff.data.datamodule import KDEFDataModule

    dm = KDEFDataModule(hostile_root, num_folds=2, face_crop="box", cache_dir=tmp_path)
    dm.setup()
    info = dm.describe()
    assert info["train"] + info["val"] + info["test"] == 274
    assert info["skipped"] == len(dm.index.skipped) >= 10
