"""KDEF as distributed: defects, the check CLI, root variants, protocols, cache, face crops, augmentation."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from lanmsff.data import cache as cache_module
from lanmsff.data.cache import preprocess_records
from lanmsff.data.datamodule import KDEFDataModule
from lanmsff.data.faces import FaceDetector, decode_gray
from lanmsff.data.kdef import index_kdef
from lanmsff.data.kdef_names import ANGLES, EXPRESSIONS
from lanmsff.data.splits import SplitSpec, make_split
from lanmsff.data.synthetic import synthetic_names
from lanmsff.data.transforms import offline_expand, train_transform
from lanmsff.errors import ConfigError, UserError

EXPECTED_SKIPPED = {
    "AF01/AF01ANS.jpg": "duplicate of AF01/AF01ANS.JPG",
    "AF01/AF01NEHL.JPG": "black placeholder image (all dark)",
    "AF01/AF01XXS.JPG": "file name does not follow the KDEF grammar",
    "AF01/Thumbs.db": "stray file (not a JPEG image)",
    "AF02/.DS_Store": "stray file (not a JPEG image)",
    "AM02/AM02SUS.JPG": "not a decodable image",
    "BF01/BF01HAS.JPG": "truncated JPEG (no end-of-image marker)",
    "BF02/readme.txt": "stray file (not a JPEG image)",
    "BM01/BM01ANFL.JPG": "zero-byte file",
    "BM02/AF01ANS.JPG": "belongs to folder AF01, found in BM02",
}


@pytest.fixture(scope="module")
def defect_tree(tiny_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic tree plus every defect of public KDEF copies, in the real layout."""
    out = tmp_path_factory.mktemp("kdef_defects")
    shutil.copytree(tiny_tree / "KDEF_and_AKDEF", out / "KDEF_and_AKDEF")
    kdef = out / "KDEF_and_AKDEF" / "KDEF"
    for person, misnamed, real in (("F", "AF31V.JPG", "AF31SAHL.JPG"), ("M", "AM31H.JPG", "AM31SUHR.JPG")):
        folder = kdef / f"A{person}31"
        folder.mkdir()
        for src in (kdef / f"A{person}01").iterdir():
            shutil.copy(src, folder / src.name.replace(f"A{person}01", f"A{person}31"))
        (folder / real).rename(folder / misnamed)
    black = cv2.imencode(".jpg", np.zeros((762, 562, 3), np.uint8))[1].tobytes()
    (kdef / "AF01" / "AF01NEHL.JPG").write_bytes(black)
    data = (kdef / "BF01" / "BF01HAS.JPG").read_bytes()
    (kdef / "BF01" / "BF01HAS.JPG").write_bytes(data[: len(data) // 2])
    (kdef / "BM01" / "BM01ANFL.JPG").write_bytes(b"")
    (kdef / "AM02" / "AM02SUS.JPG").write_bytes(random.Random(0).randbytes(5000))
    shutil.copy(kdef / "AF01" / "AF01ANS.JPG", kdef / "AF01" / "AF01XXS.JPG")
    shutil.copy(kdef / "AF01" / "AF01ANS.JPG", kdef / "AF01" / "AF01ANS.jpg")
    shutil.copy(kdef / "AF01" / "AF01ANS.JPG", kdef / "BM02" / "AF01ANS.JPG")
    (kdef / "AM01" / "AM01HAS.JPG").rename(kdef / "AM01" / "AM01HAS.jpg")  # lower-case suffix is fine
    (kdef / "AF01" / "Thumbs.db").write_bytes(b"\x00" * 100)
    (kdef / "AF02" / ".DS_Store").write_bytes(b"\x00" * 100)
    (kdef / "BF02" / "readme.txt").write_text("KDEF\n")
    (out / "KDEF_and_AKDEF" / "AKDEF").mkdir()
    shutil.copy(kdef / "AF01" / "AF01ANS.JPG", out / "KDEF_and_AKDEF" / "AKDEF" / "AFAN.JPG")
    return out


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lanmsff.data.cli", *args], capture_output=True, text=True)


def test_check_reports_every_defect_exactly(defect_tree: Path) -> None:
    result = run_cli("check", str(defect_tree), "--json", "--face-crop", "box")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == 280 + 35 + 35 - 4  # zero-byte, black, truncated and undecodable files are out
    assert report["subjects"] == 6
    assert {s["file"]: s["reason"] for s in report["skipped"]} == EXPECTED_SKIPPED
    assert report["renamed"] == [
        {"file": "AF31/AF31V.JPG", "as": "AF31SAHL.JPG"},
        {"file": "AM31/AM31H.JPG", "as": "AM31SUHR.JPG"},
    ]
    assert sum(report["per_angle"].values()) == sum(report["per_expression"].values()) == report["images"]
    assert report["per_angle"]["HL"] == 56 + 14 - 1  # AF01NEHL is black
    assert set(report) >= {"images", "subjects", "per_angle", "per_expression", "skipped", "renamed"}


def test_check_human_readable_and_nothing_usable(defect_tree: Path, tmp_path: Path) -> None:
    result = run_cli("check", str(defect_tree / "KDEF_and_AKDEF"), "--face-crop", "box")
    assert result.returncode == 0
    assert "346 usable images of 6 subjects" in result.stdout
    assert "AF31/AF31V.JPG -> AF31SAHL.JPG" in result.stdout and "zero-byte file" in result.stdout
    empty = tmp_path / "KDEF" / "AF01"
    empty.mkdir(parents=True)
    (empty / "AF01ANS.JPG").write_bytes(b"")
    result = run_cli("check", str(tmp_path), "--json")
    assert result.returncode == 2 and json.loads(result.stdout)["images"] == 0
    result = run_cli("check", str(tmp_path / "missing"))
    assert result.returncode == 2 and "does not exist" in result.stderr and "kdef.se" in result.stderr


@pytest.mark.parametrize("level", ["parent", "KDEF_and_AKDEF", "KDEF_and_AKDEF/KDEF"])
def test_root_may_be_any_level(tiny_tree: Path, level: str) -> None:
    root = tiny_tree if level == "parent" else tiny_tree / level
    index = index_kdef(root)
    assert len(index) == 280 and index.root == tiny_tree / "KDEF_and_AKDEF" / "KDEF"


def test_index_is_independent_of_listing_order(defect_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = index_kdef(defect_tree)
    real_scandir = os.scandir

    def shuffled(path):  # a file system that lists entries in another order
        entries = list(real_scandir(path))
        random.Random(str(path)).shuffle(entries)
        return iter(entries)

    monkeypatch.setattr(os, "scandir", shuffled)
    again = index_kdef(defect_tree)
    assert again.records == reference.records and again.skipped == reference.skipped


# ----------------------------------------------------------------------------- protocols
NAMES = synthetic_names(70)  # the full KDEF grammar: 70 people, 4,900 names


def _subjects(indices: np.ndarray) -> set[str]:
    return {NAMES[i].subject for i in indices}


@pytest.mark.parametrize("fold", range(10))
def test_subject_folds_are_person_independent_and_balanced(fold: int) -> None:
    split = make_split(NAMES, SplitSpec(protocol="subject", num_folds=10, fold=fold, seed=3))
    train, val, test = _subjects(split.train), _subjects(split.val), _subjects(split.test)
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(split.train) + len(split.val) + len(split.test) == 4900
    cells = Counter((NAMES[i].expression, NAMES[i].angle) for i in split.test)
    assert len(cells) == 35 and set(cells.values()) == {14}  # 7 people x 2 sessions in every cell
    assert {s[0] for s in test} == {"F", "M"}


def test_subject_test_folds_partition_the_people() -> None:
    tests = [_subjects(make_split(NAMES, SplitSpec(protocol="subject", num_folds=10, fold=f)).test) for f in range(10)]
    assert sum(len(t) for t in tests) == 70 and set().union(*tests) == {n.subject for n in NAMES}


@pytest.mark.parametrize("fold", range(5))
def test_cross_pose(fold: int) -> None:
    spec = SplitSpec(
        protocol="cross_pose", num_folds=5, fold=fold, train_angles=["S", "HL", "HR"], test_angles=["FL", "FR"]
    )
    split = make_split(NAMES, spec)
    assert {NAMES[i].angle for i in split.train} == {NAMES[i].angle for i in split.val} == {"S", "HL", "HR"}
    assert {NAMES[i].angle for i in split.test} == {"FL", "FR"}
    train, val, test = _subjects(split.train), _subjects(split.val), _subjects(split.test)
    assert not (train & val) and not (train & test) and not (val & test)


def test_stratified_folds_partition_images_and_balance_cells() -> None:
    tests = [make_split(NAMES, SplitSpec(protocol="stratified", num_folds=10, fold=f)) for f in range(10)]
    all_test = np.concatenate([s.test for s in tests])
    assert len(all_test) == len(set(all_test.tolist())) == 4900
    for split in tests:
        assert not set(split.val.tolist()) & set(split.test.tolist())
        assert not set(split.train.tolist()) & set(split.test.tolist())
        cells = Counter((NAMES[i].expression, NAMES[i].angle) for i in split.test)
        assert set(cells.values()) == {14}


def test_paper_protocol_validates_on_the_test_fold() -> None:
    with pytest.warns(UserWarning, match="optimistic"):
        split = make_split(NAMES, SplitSpec(protocol="paper", num_folds=10, fold=2))
    assert np.array_equal(split.val, split.test) and len(split.train) == 4410


def test_splits_are_deterministic_and_seeded() -> None:
    first = make_split(NAMES, SplitSpec(protocol="subject", num_folds=10, fold=4, seed=7))
    shuffled = list(NAMES)
    random.Random(1).shuffle(shuffled)
    again = make_split(shuffled, SplitSpec(protocol="subject", num_folds=10, fold=4, seed=7))
    assert {NAMES[i] for i in first.test} == {shuffled[i] for i in again.test}
    assert {NAMES[i] for i in first.val} == {shuffled[i] for i in again.val}
    other = make_split(NAMES, SplitSpec(protocol="subject", num_folds=10, fold=4, seed=8))
    assert _subjects(other.test) != _subjects(first.test)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fold": 10}, r"data.fold=10 must satisfy 0 <= fold < data.num_folds=10"),
        ({"protocol": "loso"}, "data.protocol='loso' is not valid; allowed values: 'subject', 'stratified'"),
        ({"protocol": "cross_pose", "train_angles": ["S"], "test_angles": ["S", "FL"]}, "overlaps data.train_angles"),
        (
            {"protocol": "cross_pose", "train_angles": ["S"], "test_angles": ["XX"]},
            "data.test_angles='XX' is not valid",
        ),
    ],
)
def test_impossible_splits_name_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_split(NAMES, SplitSpec(**kwargs))


def test_splits_cli(tiny_tree: Path) -> None:
    result = run_cli("splits", str(tiny_tree), "--protocol", "subject", "--num-folds", "4", "--fold", "1", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert set(listing) == {"train", "val", "test", "test_hash", "protocol_version", "skipped"}
    parts = {k: listing[k] for k in ("train", "val", "test")}
    assert sum(len(v) for v in parts.values()) == 280 and listing["skipped"] == 0
    assert all(p.count("/") == 1 and p.endswith(".JPG") for v in parts.values() for p in v)  # e.g. AF01/AF01ANS.JPG
    people = {k: {p[1:4] for p in v} for k, v in parts.items()}
    assert len(people["test"]) == 1 and not people["test"] & people["train"]
    again = run_cli("splits", str(tiny_tree), "--protocol", "subject", "--num-folds", "4", "--fold", "1", "--json")
    assert again.stdout == result.stdout
    bad = run_cli("splits", str(tiny_tree), "--protocol", "subject", "--num-folds", "4", "--fold", "4")
    assert bad.returncode == 2 and "data.fold=4" in bad.stderr


def test_datamodule_drops_defective_files_and_keeps_subjects_apart(defect_tree: Path, tmp_path: Path) -> None:
    dm = KDEFDataModule(defect_tree, protocol="subject", num_folds=3, fold=0, face_crop="box", cache_dir=tmp_path)
    dm.setup()
    sizes = dm.describe()
    assert sizes["train"] + sizes["val"] + sizes["test"] == 346 and sizes["skipped"] == 10 and sizes["renamed"] == 2
    assert not set(dm.subjects["test"]) & (set(dm.subjects["train"]) | set(dm.subjects["val"]))
    assert "AF01/AF01NEHL.JPG" not in dm.test_files


@pytest.mark.parametrize("protocol", ["subject", "stratified"])
def test_one_file_list_for_check_splits_and_training(defect_tree: Path, tmp_path: Path, protocol: str) -> None:
    """check, splits and training see the same images: unusable files are out before folds are assigned."""
    unusable = {f for f, reason in EXPECTED_SKIPPED.items() if reason.endswith(("dark)", "image", "marker)", "file"))}
    assert len(unusable) == 4  # black placeholder, undecodable, truncated, zero-byte
    check = json.loads(run_cli("check", str(defect_tree), "--json", "--face-crop", "box").stdout)
    options = ("--protocol", protocol, "--num-folds", "3", "--fold", "1", "--seed", "7")
    result = run_cli("splits", str(defect_tree), *options, "--json", "--cache-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    listed = [f for part in ("train", "val", "test") for f in listing[part]]
    assert len(listed) == len(set(listed)) == check["images"] == 346
    assert not unusable & set(listed) and listing["skipped"] == len(check["skipped"]) == 10
    dm = KDEFDataModule(
        defect_tree, protocol=protocol, num_folds=3, fold=1, seed=7, face_crop="box", cache_dir=tmp_path
    )
    dm.setup()
    info = dm.describe()
    assert info["test_hash"] == listing["test_hash"] and info["protocol_version"] == listing["protocol_version"] == 2
    assert sorted(dm.test_files) == listing["test"] and info["test"] == len(listing["test"])
    assert info["train_images"] + info["val"] == len(listing["train"]) + len(listing["val"])
    assert info["identities_shared"] is (protocol == "stratified")
    cached = list(tmp_path.glob("kdef_usable_*.json"))
    screened = unusable - {"BM01/BM01ANFL.JPG"}  # the indexer already skips zero-byte files by their size
    assert len(cached) == 1 and set(json.loads(cached[0].read_text())["unusable"]) == screened


def test_angles_restrict_the_dataset(tiny_tree: Path, tmp_path: Path) -> None:
    dm = KDEFDataModule(tiny_tree, angles=["S"], num_folds=4, face_crop="box", cache_dir=tmp_path)
    dm.setup()
    assert set(dm.data_test.groups.tolist()) == {ANGLES.index("S")}
    assert len(dm.data_train) + len(dm.data_val) + len(dm.data_test) == 56


def test_paper_protocol_warns(tiny_tree: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dm = KDEFDataModule(tiny_tree, protocol="paper", num_folds=4, face_crop="box", cache_dir=tmp_path)
    dm.setup()
    assert "optimistic" in caplog.text
    assert np.array_equal(dm.data_val.labels, dm.data_test.labels)


# ----------------------------------------------------------------------------- cache
def test_cache_is_reused_and_invalidated(tiny_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = index_kdef(tiny_tree)
    first = preprocess_records(index.root, index.records, mode="box", cache_dir=tmp_path)
    [cache_file] = tmp_path.glob("kdef_*.npz")

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(cache_module, "_build", no_rebuild)
    again = preprocess_records(index.root, index.records, mode="box", cache_dir=tmp_path)
    assert np.array_equal(first.images, again.images) and first.paths == again.paths
    monkeypatch.undo()

    small = preprocess_records(index.root, index.records, image_size=32, mode="box", cache_dir=tmp_path)
    assert small.images.shape == (280, 32, 32) and len(list(tmp_path.glob("kdef_*.npz"))) == 2

    changed = index.root / index.records[0].path
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    preprocess_records(index.root, index.records, mode="box", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("kdef_*.npz"))) == 3
    assert cache_file.exists()


@pytest.mark.parametrize("damage", ["garbage", "half"])
def test_damaged_cache_is_rebuilt_not_trusted(
    tiny_tree: Path, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    index = index_kdef(tiny_tree)
    good = preprocess_records(index.root, index.records, mode="box", cache_dir=tmp_path)
    [cache_file] = tmp_path.glob("kdef_*.npz")
    data = cache_file.read_bytes()
    cache_file.write_bytes(b"not a cache" if damage == "garbage" else data[: len(data) // 2])
    rebuilt = preprocess_records(index.root, index.records, mode="box", cache_dir=tmp_path)
    assert "cannot be trusted" in caplog.text
    assert np.array_equal(rebuilt.images, good.images)
    assert cache_file.read_bytes() == data  # rewritten whole


def test_cache_from_another_key_is_rejected(tiny_tree: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    index = index_kdef(tiny_tree)
    preprocess_records(index.root, index.records[:10], mode="box", cache_dir=tmp_path / "a")
    preprocess_records(index.root, index.records, mode="box", cache_dir=tmp_path / "b")
    [other] = (tmp_path / "a").glob("*.npz")
    [target] = (tmp_path / "b").glob("*.npz")
    shutil.copy(other, target)  # a valid file under the wrong name
    faces = preprocess_records(index.root, index.records, mode="box", cache_dir=tmp_path / "b")
    assert len(faces.paths) == 280 and "key does not match" in caplog.text


# ----------------------------------------------------------------------------- faces
def test_face_detector_finds_the_face_in_a_real_photo() -> None:
    from skimage import data

    gray = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)  # public domain, shipped in the wheel
    found = FaceDetector(detect_width=320, min_face=0.1).detect(gray, ("frontal",))
    assert found is not None
    (x, y, w, h), method = found
    assert method == "frontal"
    assert 150 < x + w / 2 < 250 and 80 < y + h / 2 < 150 and 70 < w < 140


def test_detect_mode_falls_back_to_the_box_and_counts_it(tiny_tree: Path, tmp_path: Path) -> None:
    index = index_kdef(tiny_tree)
    faces = preprocess_records(index.root, index.records[:40], mode="detect", cache_dir=None, workers=1)
    counts = faces.crop_counts()
    assert sum(counts.values()) == 40 and counts.get("box", 0) > 0
    assert set(counts) <= {"frontal", "profile", "profile_mirrored", "box"}


def test_decode_rejects_truncated_and_garbage() -> None:
    image = cv2.imencode(".jpg", np.full((40, 40), 128, np.uint8))[1].tobytes()
    assert decode_gray(image).shape == (40, 40)
    for data, reason in ((image[:-20], "truncated"), (b"GIF89a" + b"\x00" * 50, "not a decodable"), (b"", "zero-byte")):
        with pytest.raises(Exception, match=reason):
            decode_gray(data)


# ----------------------------------------------------------------------------- augmentation
def test_online_augmentation_draws_the_four_reference_variants() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    transform = train_transform(64)
    seen = Counter()
    for _ in range(400):
        out = transform(image=image)["image"]
        assert out.shape == (64, 64) and out.dtype == np.uint8
        if np.array_equal(out, image):
            seen["original"] += 1
        elif np.array_equal(out, image[:, ::-1]):
            seen["flip"] += 1
        else:
            seen["other"] += 1
    assert 60 < seen["original"] < 140 and 60 < seen["flip"] < 140 and 150 < seen["other"] < 250


def test_offline_expansion_is_four_fixed_variants() -> None:
    images = np.random.default_rng(1).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    expanded = offline_expand(images)
    assert expanded.shape == (12, 64, 64)
    assert np.array_equal(expanded[0], images[0]) and np.array_equal(expanded[1], images[0][:, ::-1])
    assert not np.array_equal(expanded[2], images[0]) and not np.array_equal(expanded[3], images[0])
    assert np.array_equal(offline_expand(images), expanded)  # fixed, not random per call


def test_expression_codes_are_the_label_order() -> None:
    assert EXPRESSIONS == ("AF", "AN", "DI", "HA", "NE", "SA", "SU")


def test_bad_user_root_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="No KDEF identity-session folders"):
        index_kdef(tmp_path)
