"""RAF-DB basic as distributed: the label list, its defects, the official split and the 7 classes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from lanmsff.data.classes import map_classes
from lanmsff.data.cli import main as cli_main
from lanmsff.data.fer import FERPLUS_CLASSES
from lanmsff.data.rafdb import CLASSES, RafdbDataModule, index_rafdb
from lanmsff.errors import UserError

from .helpers.images import truncate, write_jpeg

TRAIN_PER_CLASS, TEST_PER_CLASS = 4, 2
EXPECTED_SKIPPED = {
    "EmoLabel/list_patition_label.txt:43": "label 8 not in 1..7",
    "EmoLabel/list_patition_label.txt:44": "not '<name> <label>'",
    "EmoLabel/list_patition_label.txt:45": "name is neither train_... nor test_...",
    "EmoLabel/list_patition_label.txt:46": "duplicate of EmoLabel/list_patition_label.txt:1",
    "Image/aligned/train_09999_aligned.jpg": "listed at EmoLabel/list_patition_label.txt:47 but missing",
    "Image/aligned/train_08888_aligned.jpg": "not in EmoLabel/list_patition_label.txt",
    "Image/aligned/test_00002_aligned.jpg": "truncated JPEG (no end-of-image marker)",
}


@pytest.fixture(scope="module")
def rafdb_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RAF-DB's basic folder: 4 training and 2 test faces per class (labels 1..7), and the defects of copies."""
    base = tmp_path_factory.mktemp("rafdb") / "RAF-DB" / "basic"
    lines, counts = [], Counter()
    for part, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        for k in range(per_class * len(CLASSES)):
            label = k % len(CLASSES) + 1
            name = f"{part}_{k + 1:05d}.jpg"
            lines.append(f"{name} {label}")
            write_jpeg(base / "Image" / "aligned" / f"{part}_{k + 1:05d}_aligned.jpg", side=100)
            counts[part] += 1
    lines += ["train_07777.jpg 8", "train_07778.jpg", "val_00001.jpg 3", lines[0], "train_09999.jpg 2", ""]
    write_jpeg(base / "Image" / "aligned" / "train_07777_aligned.jpg")
    write_jpeg(base / "Image" / "aligned" / "train_07778_aligned.jpg")
    write_jpeg(base / "Image" / "aligned" / "val_00001_aligned.jpg")
    write_jpeg(base / "Image" / "aligned" / "train_08888_aligned.jpg")
    truncate(base / "Image" / "aligned" / "test_00002_aligned.jpg")
    (base / "EmoLabel").mkdir()
    (base / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return base


def test_check_reports_every_defect_with_its_line(rafdb_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(
        [
            "check",
            str(rafdb_tree.parent),
            "--dataset",
            "rafdb",
            "--json",
            "--face-crop",
            "none",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    skipped = {s["file"]: s["reason"] for s in report["skipped"]}
    # the three listed-but-wrong lines' images are on disk too, and reported as not listed
    for stem in ("train_07777", "train_07778", "val_00001"):
        assert skipped.pop(f"Image/aligned/{stem}_aligned.jpg") == "not in EmoLabel/list_patition_label.txt"
    assert skipped == EXPECTED_SKIPPED
    assert report["images"] == (TRAIN_PER_CLASS + TEST_PER_CLASS) * len(CLASSES) - 1
    assert report["per_expression"]["surprise"] == TRAIN_PER_CLASS + TEST_PER_CLASS
    assert report["excluded"] == [] and report["subjects"] == 0
    assert set(report) == {
        "dataset",
        "root",
        "images",
        "subjects",
        "per_angle",
        "per_expression",
        "skipped",
        "renamed",
        "excluded",
        "face_crops",
    }


def test_official_split_and_validation_from_train(rafdb_tree: Path, tmp_path: Path) -> None:
    dm = RafdbDataModule(rafdb_tree, face_crop="none", image_size=32, val_fraction=0.25, cache_dir=tmp_path)
    dm.setup()
    assert len(dm.data_test) == TEST_PER_CLASS * len(CLASSES) - 1
    assert all(Path(f).name.startswith("test_") for f in dm.test_files)
    assert len(dm.data_train) + len(dm.data_val) == TRAIN_PER_CLASS * len(CLASSES)
    assert Counter(dm.data_val.labels.tolist()) == Counter(range(len(CLASSES)))  # one per class: dealt per class
    assert dm.describe()["protocol"] == "official" and dm.describe()["skipped"] == 10


def test_classes_are_the_ferplus_emotions_without_contempt() -> None:
    mapping = map_classes(FERPLUS_CLASSES, CLASSES)
    assert len(mapping.shared) == 7 and mapping.unmapped_model == ("contempt",)
    assert not mapping.unmapped_data


def test_a_folder_without_the_label_list_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"list_patition_label\.txt"):
        index_rafdb(tmp_path)
