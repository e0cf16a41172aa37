"""Any image folder: root/<class>/*.jpg, or a CSV of file,label,subject,view; classes, views and protocols."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from lanmsff.data.classes import map_classes
from lanmsff.data.folder import FolderDataModule, index_folder
from lanmsff.data.kdef_names import EXPRESSION_NAMES
from lanmsff.errors import ConfigError, UserError

from .helpers.images import write_jpeg

CLASSES = ("Angry", "Happy", "Neutral")


def test_class_folders_become_classes_and_strays_are_reported(tmp_path: Path) -> None:
    for c in CLASSES:
        for k in range(4):
            write_jpeg(tmp_path / c / f"{c}_{k}.jpg")
    write_jpeg(tmp_path / "Happy" / "more" / "deep.png")
    (tmp_path / "Angry" / "notes.txt").write_text("x")
    (tmp_path / "Neutral" / "empty.jpg").write_bytes(b"")
    index = index_folder(tmp_path)
    assert index.expressions == CLASSES and len(index.records) == 13
    assert Counter(r.name.expression for r in index.records) == {"Angry": 4, "Happy": 5, "Neutral": 4}
    assert {s["file"]: s["reason"] for s in index.skipped} == {
        "Angry/notes.txt": "stray file (not a JPEG or PNG image)",
        "Neutral/empty.jpg": "zero-byte file",
    }
    mapping = map_classes(EXPRESSION_NAMES, index.expressions)  # any known spelling meets KDEF's classes
    assert set(mapping.shared) == {"anger", "happiness", "neutral"}
    with pytest.raises(ConfigError, match="Sad"):
        index_folder(tmp_path, classes=["Sad", "Happy"])


@pytest.fixture
def csv_folder(tmp_path: Path) -> Path:
    rows = ["file,label,subject,view"]
    for person in ("p1", "p2", "p3", "p4"):
        for c in CLASSES:
            for view in ("left", "front"):
                rel = f"img/{person}_{c}_{view}.jpg"
                write_jpeg(tmp_path / rel)
                rows.append(f"{rel},{c},{person},{view}")
    rows += ["img/gone.jpg,Happy,p1,front", "img/p1_Happy_left.jpg,Happy,p1,left", ",Happy,p1,left"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_csv_gives_subjects_views_and_person_independent_folds(csv_folder: Path, tmp_path: Path) -> None:
    dm = FolderDataModule(csv_folder, face_crop="none", image_size=32, num_folds=2, cache_dir=tmp_path / "c")
    assert dm.spec.protocol == "subject" and dm.class_names == CLASSES and dm.group_names == ("front", "left")
    dm.setup()
    people = {part: set(v) for part, v in dm.subjects.items()}
    assert people["test"] and not (people["test"] & (people["train"] | people["val"]))
    assert len(dm.data_train) + len(dm.data_val) + len(dm.data_test) == 4 * 3 * 2
    assert {s["reason"] for s in dm.index.skipped} == {
        "listed at labels.csv:26 but missing",
        "listed twice",
        "malformed row",
    }


def test_without_subjects_the_split_is_image_level_and_says_so(tmp_path: Path) -> None:
    for c in CLASSES:
        for k in range(6):
            write_jpeg(tmp_path / "data" / c / f"{k}.jpg")
    dm = FolderDataModule(tmp_path / "data", face_crop="none", image_size=32, num_folds=2, cache_dir=tmp_path / "c")
    assert dm.spec.protocol == "stratified" and dm.spec.identities_shared
    dm.setup()
    assert len(dm.data_test) == 9


def test_an_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="class name"):
        index_folder(tmp_path)
