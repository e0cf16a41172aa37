"""AffectNet in both published layouts: the CSV release (face boxes, codes 0-10) and the later .npy release;
the non-expression codes excluded and counted, the 7- and 8-class protocols, class-balanced sampling."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from lanmsff.data.affectnet import CLASSES, AffectNetDataModule, index_affectnet
from lanmsff.data.cli import main as cli_main
from lanmsff.data.datamodule import balanced_sampler

from .helpers.images import write_jpeg

HEADER = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
LISTS = "Manually_Annotated_file_lists"
PER_CODE = {"training": 3, "validation": 2}
NON_EXPRESSIONS = {"none (code 8)": 5, "uncertain (code 9)": 5, "no-face (code 10)": 5}


@pytest.fixture(scope="module")
def csv_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CSV release: every code 0-10 in both files, plus a code out of range, a malformed row, a missing image."""
    root = tmp_path_factory.mktemp("affectnet")
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir()
    for part, per_code in PER_CODE.items():
        rows = []
        for code in range(11):
            for k in range(per_code):
                rel = f"{100 + code}/{part}_{code}_{k}.jpg"
                write_jpeg(root / "Manually_Annotated_Images" / rel, side=96)
                rows.append(f'{rel},16,16,48,48,"20.1;30.2;40.3",{code},0.5,-0.25\n')
        if part == "training":
            write_jpeg(root / "Manually_Annotated_Images" / "1/out_of_range.jpg", side=96)
            rows += [
                "1/out_of_range.jpg,16,16,48,48,,11,0,0\n",
                "1/short.jpg,16,16\n",
                "1/missing.jpg,1,1,9,9,,3,0,0\n",
            ]
        (lists / f"{part}.csv").write_text(HEADER + "".join(rows))
    return root


def test_check_counts_excluded_codes_and_reports_defects(csv_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(
        [
            "check",
            str(csv_tree),
            "--dataset",
            "affectnet",
            "--json",
            "--face-crop",
            "box",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 8 * sum(PER_CODE.values())
    assert report["face_crops"] == {"annotation": report["images"]}  # the annotated boxes, not the detector
    assert Counter(e["reason"] for e in report["excluded"]) == NON_EXPRESSIONS
    assert {s["file"]: s["reason"] for s in report["skipped"]} == {
        f"{LISTS}/training.csv:35": "expression '11' not in 0..10",
        f"{LISTS}/training.csv:36": "malformed row",
        "Manually_Annotated_Images/1/missing.jpg": f"listed at {LISTS}/training.csv:37 but missing",
    }


@pytest.mark.parametrize("classes", [7, 8])
def test_validation_set_is_the_test_set_of_both_protocols(csv_tree: Path, tmp_path: Path, classes: int) -> None:
    dm = AffectNetDataModule(csv_tree, classes=classes, face_crop="box", image_size=32, cache_dir=tmp_path)
    dm.setup()
    assert dm.class_names == CLASSES[:classes]
    assert Counter(dm.data_test.labels.tolist()) == {k: PER_CODE["validation"] for k in range(classes)}
    assert len(dm.data_train) + len(dm.data_val) == classes * PER_CODE["training"]
    assert all("validation_" in f for f in dm.test_files)
    excluded = Counter(e["reason"] for e in dm.index.excluded)
    assert excluded == {**NON_EXPRESSIONS, **({"contempt (data.classes=7)": 5} if classes == 7 else {})}


def test_later_release_with_npy_annotations(tmp_path: Path) -> None:
    for folder, codes in (("train_set", [0, 1, 2, 3, 4, 5, 6, 7, 1]), ("val_set", [0, 1, 2, 3, 4, 5, 6, 7])):
        (tmp_path / folder / "annotations").mkdir(parents=True)
        for n, code in enumerate(codes):
            write_jpeg(tmp_path / folder / "images" / f"{n}.jpg", seed=f"{folder}{n}")
            np.save(tmp_path / folder / "annotations" / f"{n}_exp.npy", np.array(str(code)))
    write_jpeg(tmp_path / "train_set" / "images" / "99.jpg")  # its annotation is missing
    index = index_affectnet(tmp_path, classes=7)
    assert len(index.records) == 8 + 7 and len(index.excluded) == 2  # contempt once in each set
    assert [s["file"] for s in index.skipped] == ["train_set/images/99.jpg"]
    assert Counter(r.name.part for r in index.records) == {"train": 8, "test": 7}


def test_balanced_sampling_draws_every_class_equally_often() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    torch.manual_seed(0)
    drawn = Counter(labels[i] for _ in range(20) for i in balanced_sampler(labels))
    assert sum(drawn.values()) == 2000
    assert abs(drawn[0] - drawn[1]) < 200  # natural sampling would give 1800 to 200
