"""RaFD as distributed: the file-name grammar, defects, views mapped onto KDEF's, person-independent folds,
the contempt setting and the class mapping onto KDEF."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from lanmsff.data.cache import usable_index
from lanmsff.data.classes import map_classes
from lanmsff.data.cli import main as cli_main
from lanmsff.data.kdef_names import ANGLES, EXPRESSION_NAMES
from lanmsff.data.rafd import CAMERA_ANGLES, EXPRESSIONS, GAZES, RafdDataModule, index_rafd, parse_name
from lanmsff.data.splits import SplitSpec, split_records

from .helpers.images import truncate, write_jpeg

PEOPLE = ((1, "Caucasian", "female"), (2, "Moroccan", "male"), (5, "Kid", "female"), (8, "Caucasian", "male"))
IMAGES = len(PEOPLE) * 5 * 8 * 3  # cameras x expressions x gazes
CONTEMPT = len(PEOPLE) * 5 * 3
EXPECTED_SKIPPED = {
    "Thumbs.db": "stray file (not a JPEG image)",
    "Rafd045_02_Moroccan_male_happy_left.jpg": "zero-byte file",
    "Rafd100_01_Caucasian_female_angry_frontal.jpg": (
        "file name does not follow the RaFD grammar Rafd<angle>_<id>_<ethnicity>_<gender>_..."
    ),
    "extra/Rafd090_01_Caucasian_female_angry_frontal.jpg": "duplicate of Rafd090_01_Caucasian_female_angry_frontal.jpg",
    "Rafd135_05_Kid_female_sad_right.jpg": "truncated JPEG (no end-of-image marker)",
    "Rafd180_01_Caucasian_female_neutral_left.jpg": "black placeholder image (all dark)",
}


def rafd_name(camera: int, person: tuple, expression: str, gaze: str) -> str:
    number, ethnicity, gender = person
    return f"Rafd{camera:03d}_{number:02d}_{ethnicity}_{gender}_{expression}_{gaze}.jpg"


@pytest.fixture(scope="module")
def rafd_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four people in RaFD's flat layout (small images), plus the defects real copies have."""
    root = tmp_path_factory.mktemp("rafd") / "RaFD"
    for person in PEOPLE:
        for camera in CAMERA_ANGLES:
            for expression in EXPRESSIONS:
                for gaze in GAZES:
                    write_jpeg(root / rafd_name(camera, person, expression, gaze))
    (root / "Thumbs.db").write_bytes(b"\x00" * 64)
    (root / "Rafd045_02_Moroccan_male_happy_left.jpg").write_bytes(b"")
    write_jpeg(root / "Rafd100_01_Caucasian_female_angry_frontal.jpg")
    write_jpeg(root / "extra" / "Rafd090_01_Caucasian_female_angry_frontal.jpg")
    truncate(root / "Rafd135_05_Kid_female_sad_right.jpg")
    write_jpeg(root / "Rafd180_01_Caucasian_female_neutral_left.jpg", black=True)
    return root


def test_file_names_parse_into_kdef_views_subjects_and_subgroups() -> None:
    name = parse_name("Rafd090_05_Kid_female_fearful_frontal.jpg")
    assert (name.subject, name.angle, name.expression, name.label, name.gaze) == ("F05", "S", "fearful", 0, "frontal")
    assert name.subgroups == {"gender": "female", "age": "child"}
    adult = parse_name("RAFD000_73_moroccan_MALE_Contemptuous_Right.JPG")
    assert adult.subgroups == {"gender": "male", "age": "adult", "ethnicity": "Moroccan"} and adult.label == 7
    views = {camera: parse_name(rafd_name(camera, PEOPLE[0], "sad", "left")).angle for camera in CAMERA_ANGLES}
    assert views == {0: "FR", 45: "HR", 90: "S", 135: "HL", 180: "FL"}
    for bad in (
        "Rafd091_01_Caucasian_female_sad_left.jpg",
        "Rafd090_1_Caucasian_female_sad_left.jpg",
        "Rafd090_01_Caucasian_female_bored_left.jpg",
        "Rafd090_01_Caucasian_female_sad_up.jpg",
    ):
        assert parse_name(bad) is None, bad


def test_check_reports_every_defect_exactly(rafd_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(
        [
            "check",
            str(rafd_tree),
            "--dataset",
            "rafd",
            "--json",
            "--face-crop",
            "none",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dataset"] == "rafd"
    assert report["images"] == IMAGES - CONTEMPT - 3  # zero-byte, truncated and black images are out
    assert report["subjects"] == len(PEOPLE)
    assert {s["file"]: s["reason"] for s in report["skipped"]} == EXPECTED_SKIPPED
    assert len(report["excluded"]) == CONTEMPT
    assert {e["reason"] for e in report["excluded"]} == {"contempt (data.contempt=drop)"}
    assert set(report["per_expression"]) == set(EXPRESSIONS[:-1])
    assert sum(report["per_angle"].values()) == report["images"]
    assert report["per_angle"]["S"] == len(PEOPLE) * 7 * 3  # the defects hit other views
    assert report["images"] + len(report["skipped"]) + len(report["excluded"]) == IMAGES + 3  # nothing vanishes


def test_contempt_kept_gives_eight_classes_mapped_onto_kdef(rafd_tree: Path) -> None:
    kept = index_rafd(rafd_tree, contempt="keep")
    assert not kept.excluded and Counter(r.name.expression for r in kept.records)["contemptuous"] == CONTEMPT
    seven = map_classes(EXPRESSION_NAMES, EXPRESSIONS[:-1])
    assert seven.identity  # RaFD's 7 classes are KDEF's, in KDEF's order
    eight = map_classes(EXPRESSION_NAMES, EXPRESSIONS)
    assert eight.unmapped_data == ("contemptuous",) and not eight.unmapped_model


@pytest.mark.parametrize("fold", [0, 1])
def test_subject_folds_are_person_independent_and_keep_gaze_shots_together(rafd_tree: Path, fold: int) -> None:
    index = usable_index(rafd_tree, indexer=index_rafd)
    records, split = split_records(index, SplitSpec(protocol="subject", num_folds=2, fold=fold, val_fraction=0.5))
    people = {part: {records[i].subject for i in getattr(split, part)} for part in ("train", "val", "test")}
    assert people["train"] and people["val"] and people["test"]
    assert not (people["train"] & people["test"] or people["val"] & people["test"] or people["train"] & people["val"])
    assert len(split.train) + len(split.val) + len(split.test) == len(records)
    part_of = {i: part for part in ("train", "val", "test") for i in getattr(split, part)}
    poses: dict[tuple, set[str]] = {}
    for i, record in enumerate(records):
        poses.setdefault((record.name.camera, record.subject, record.name.expression), set()).add(part_of[i])
    assert all(len(parts) == 1 for parts in poses.values())  # the near-identical gaze shots never straddle
    genders = Counter(s[0] for s in people["test"])
    assert genders == Counter({"F": 1, "M": 1})  # folds are balanced by gender


def test_data_module_labels_views_and_subgroups(rafd_tree: Path, tmp_path: Path) -> None:
    dm = RafdDataModule(rafd_tree, face_crop="none", image_size=32, num_folds=2, fold=0, cache_dir=tmp_path)
    dm.setup()
    assert dm.class_names == EXPRESSIONS[:-1] and dm.group_names == ANGLES
    test_people = {Path(f).name.split("_")[1] for f in dm.test_files}
    assert len(dm.test_subgroups) == len(dm.data_test) == len(dm.test_files)
    for file, groups in zip(dm.test_files, dm.test_subgroups, strict=True):
        name = parse_name(Path(file).name)
        assert groups == name.subgroups
    assert len(test_people) == 2
    assert dm.describe()["excluded"] == CONTEMPT and dm.describe()["skipped"] == len(EXPECTED_SKIPPED)
    groups = Counter(dm.data_test.groups.tolist())
    assert sum(groups.values()) == len(dm.data_test) and set(groups) <= set(range(len(ANGLES)))


def test_a_kdef_model_is_tested_on_rafd_per_view_without_contempt(rafd_tree: Path, tmp_path: Path) -> None:
    from lanmsff.tasks.common import test_on_dataset
    from lanmsff.training.module import FERModule

    net = {"_target_": "lanmsff.models.LANMSFF", "widths": [12, 12, 12, 12]}
    module = FERModule(net, class_names=EXPRESSION_NAMES, group_names=ANGLES, image_size=32, cpu_kernels="off")
    dm = RafdDataModule(rafd_tree, contempt="keep", face_crop="none", image_size=32, num_folds=2, cache_dir=tmp_path)
    dm.setup()
    result = test_on_dataset(module, dm, prefix="cross/rafd/")
    contempt = int((dm.data_test.labels == EXPRESSIONS.index("contemptuous")).sum())
    assert contempt > 0 and result.details["left_out_images"] == contempt
    assert result.details["images"] == len(dm.data_test) - contempt
    assert {f"cross/rafd/acc_{view}" for view in ANGLES} <= set(result.metrics)  # RaFD's cameras as KDEF's views
