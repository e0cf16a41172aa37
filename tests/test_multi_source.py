"""Training on several data sets at once: one vocabulary, sources as groups, sampling weights per source, and
the sources that share photographs (FER-2013, FERPlus) refused together, flagged in cross-dataset tests and
checked by ``lanmsff-data check`` in the keys of every data set."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from lanmsff.data.fer import FER2013DataModule, FERPlusDataModule
from lanmsff.data.folder import FolderDataModule
from lanmsff.data.multi_source import MultiSourceDataModule
from lanmsff.data.rafd import EXPRESSIONS, RafdDataModule
from lanmsff.errors import ConfigError, UserError
from lanmsff.training.cross_dataset import flag_shared_images

from .helpers.images import write_jpeg

FOLDER_CLASSES = ("Contempt", "Happy")
KEYS = {
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
}  # what lanmsff-data check --json prints for every data set


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small RaFD tree (4 people, frontal gaze) and an image folder whose classes are spelled otherwise."""
    base = tmp_path_factory.mktemp("multi")
    for number, gender in ((1, "female"), (2, "male"), (3, "female"), (4, "male")):
        for camera in (0, 90, 180):
            for expression in EXPRESSIONS:
                write_jpeg(base / "RaFD" / f"Rafd{camera:03d}_{number:02d}_Caucasian_{gender}_{expression}_frontal.jpg")
    for c in FOLDER_CLASSES:
        for k in range(10):
            write_jpeg(base / "faces" / c / f"{k}.jpg")
    return {"rafd": base / "RaFD", "faces": base / "faces"}


def make(sources: dict[str, Path], tmp_path: Path, **kwargs) -> MultiSourceDataModule:
    common = {"face_crop": "none", "image_size": 32, "num_folds": 2, "cache_dir": tmp_path}
    return MultiSourceDataModule(
        {"rafd": RafdDataModule(sources["rafd"], **common), "faces": FolderDataModule(sources["faces"], **common)},
        image_size=32,
        **kwargs,
    )


def test_one_vocabulary_and_sources_as_groups(sources: dict[str, Path], tmp_path: Path) -> None:
    dm = make(sources, tmp_path)
    assert dm.class_names == ("fear", "anger", "disgust", "happiness", "neutral", "sadness", "surprise", "contempt")
    assert dm.group_names == ("rafd", "faces")
    dm.setup()
    rafd = dm.sources["rafd"]
    assert len(dm.data_test) == len(rafd.data_test) + len(dm.sources["faces"].data_test)
    assert all(f.startswith(("rafd:", "faces:")) for f in dm.test_files) and len(dm.test_files) == len(dm.data_test)
    faces = dm.data_test.groups == 1
    # the folder's "Happy" and "Contempt" become the joint happiness and contempt; RaFD's labels keep their meaning
    assert set(dm.data_test.labels[faces].tolist()) == {
        dm.class_names.index("happiness"),
        dm.class_names.index("contempt"),
    }
    assert np.array_equal(dm.data_test.labels[~faces], rafd.data_test.labels)  # RaFD's 7 classes come first
    assert len(dm.test_subgroups) == len(dm.data_test) and dm.test_subgroups[0]["source"] == "rafd"


def test_sampling_weights_share_the_draws_between_sources(sources: dict[str, Path], tmp_path: Path) -> None:
    dm = make(sources, tmp_path, weights={"rafd": 1, "faces": 3}, augment={"mode": "none"})
    dm.setup()
    torch.manual_seed(0)
    drawn = Counter(int(g) for _ in range(10) for _, _, groups in dm.train_dataloader() for g in groups)
    share = drawn[1] / sum(drawn.values())
    assert 0.7 < share < 0.8  # 3 of 4 draws from the folder, though it holds far fewer training images
    assert len(dm.sources["faces"].data_train) < len(dm.sources["rafd"].data_train)


def test_fer2013_and_ferplus_are_refused_together(sources: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError, match="same photographs relabelled"):
        MultiSourceDataModule({"fer": FER2013DataModule(tmp_path), "plus": FERPlusDataModule(tmp_path, tmp_path)})
    with pytest.raises(ConfigError, match="every source a weight"):
        make(sources, tmp_path, weights={"rafd": 1})


def test_cross_dataset_tests_between_the_same_photographs_are_flagged() -> None:
    flagged, plain = {"dataset": "ferplus"}, {"dataset": "rafd"}
    flag_shared_images("fer2013", flagged)
    flag_shared_images("kdef", plain)
    assert flagged["shared_images"] is True and plain["shared_images"] is False


def test_check_reports_fer2013_and_ferplus_in_the_keys_of_every_data_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lanmsff.data.cli import main as cli_main

    face = " ".join(["128"] * 48 * 48)
    rows = [f"3,{face},Training", f"0,{face},PublicTest", "9,1 2 3,Training", f"6,{face},PrivateTest"]
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    header = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
    votes = [
        "Training,fer0000000.png,0,10,0,0,0,0,0,0,0,0",
        "PublicTest,fer0000001.png,4,0,0,4,0,0,0,0,2,0",  # no majority: no label
        "Training,fer0000002.png,0,10,0,0,0,0,0,0,0,0",  # its face is malformed in fer2013.csv
        "PrivateTest,,10,0,0,0,0,0,0,0,0,0",  # no image
    ]
    (tmp_path / "fer2013new.csv").write_text(header + "\n".join(votes) + "\n")
    reports = {}
    for dataset in ("fer2013", "ferplus"):
        assert cli_main(["check", str(tmp_path), "--dataset", dataset, "--json"]) == 0
        reports[dataset] = json.loads(capsys.readouterr().out)
    assert set(reports["fer2013"]) == set(reports["ferplus"]) == KEYS
    assert reports["fer2013"]["images"] == 3 and reports["fer2013"]["per_expression"] == {
        "angry": 1,
        "happy": 1,
        "neutral": 1,
    }
    assert [s["file"] for s in reports["fer2013"]["skipped"]] == ["fer2013.csv:4"]
    assert reports["ferplus"]["images"] == 1 and reports["ferplus"]["per_expression"] == {"happiness": 1}
    assert [s["file"] for s in reports["ferplus"]["skipped"]] == ["fer2013.csv:4"]
    assert {e["file"]: e["reason"] for e in reports["ferplus"]["excluded"]} == {
        "fer2013new.csv:3": "no FERPlus label (majority)",
        "fer2013new.csv:5": "no image name",
    }
