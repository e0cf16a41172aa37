"""FER-2013 and FERPlus: CSV parsing, malformed rows, the FERPlus label rules, the data modules.

Every file is written here, in the exact formats of fer2013.csv, icml_face_data.csv and fer2013new.csv.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from lanmsff.data.fer import (
    FER2013_CLASSES,
    FERPLUS_CLASSES,
    DrawnLabelDataset,
    FER2013DataModule,
    FERPlusDataModule,
    ferplus_distribution,
    read_fer2013,
)
from lanmsff.errors import ConfigError, UserError
from lanmsff.training import FERModule

from .conftest import compose_config

NONE = {"mode": "none"}
VOTE_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


def face(k: int) -> np.ndarray:
    return np.random.default_rng(k).integers(0, 256, (48, 48), dtype=np.uint8)


def pixels(k: int) -> str:
    return " ".join(map(str, face(k).ravel()))


def write(path: Path, header: str, rows: Sequence[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def resized(k: int) -> np.ndarray:
    return cv2.resize(face(k), (64, 64), interpolation=cv2.INTER_LINEAR)


def fer_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "lanmsff.data.fer" and r.levelno == logging.WARNING]


# ------------------------------------------------------------------------------------------- FER-2013

# (line in the file, emotion, face seed, Usage); the header is line 1
GOOD = [
    (2, 0, 0, "Training"),
    (3, 3, 1, "Training"),
    (5, 1, 2, "PublicTest"),
    (6, 2, 3, "PrivateTest"),
    (8, 6, 4, "Training"),
    (10, 4, 5, "PublicTest"),
    (12, 5, 6, "PrivateTest"),
]
BAD = {
    4: f"3,{pixels(9).rsplit(' ', 1)[0]},Training",  # 2,303 pixels
    7: f"3,{pixels(9).replace(' ', ' x', 1)},Training",  # a non-numeric value
    9: f"3,{pixels(9)},Validation",  # unknown Usage
    11: f"7,{pixels(9)},PrivateTest",  # emotion out of range
    13: f"3,256 {pixels(9).split(' ', 1)[1]},Training",  # a value above 255
    14: f"3,{pixels(9)},Training,extra",  # wrong number of fields
}


def fer2013_rows() -> list[str]:
    rows = {line: f"{emotion},{pixels(k)},{usage}" for line, emotion, k, usage in GOOD}
    return [{**rows, **BAD}[line] for line in range(2, 15)]


@pytest.fixture
def fer_csv(tmp_path: Path) -> Path:
    return write(tmp_path / "fer2013.csv", "emotion,pixels,Usage", fer2013_rows())


def expected(usage: str) -> list[tuple[int, int, int]]:
    return [(line, emotion, k) for line, emotion, k, u in GOOD if u == usage]


def test_fer2013_official_split_in_file_order(fer_csv: Path) -> None:
    dm = FER2013DataModule(fer_csv.parent, augment=NONE)
    dm.setup()
    for dataset, usage in ((dm.data_train, "Training"), (dm.data_val, "PublicTest"), (dm.data_test, "PrivateTest")):
        rows = expected(usage)
        assert dataset.labels.tolist() == [emotion for _, emotion, _ in rows]
        assert dataset.images.shape == (len(rows), 64, 64) and dataset.images.dtype == np.uint8
        for image, (_, _, k) in zip(dataset.images, rows, strict=True):
            assert np.array_equal(image, resized(k))
        assert dataset.groups.tolist() == [0] * len(rows)
    assert (len(dm.data_train), len(dm.data_val), len(dm.data_test)) == (3, 2, 2)
    assert dm.test_files == ["fer2013.csv:line 6", "fer2013.csv:line 12"]
    assert dm.num_classes == 7 and dm.class_names == FER2013_CLASSES and dm.group_names == ()


def test_fer2013_malformed_rows_skipped_in_one_warning(fer_csv: Path, caplog: pytest.LogCaptureFixture) -> None:
    table = read_fer2013(fer_csv)
    reasons = {int(table.lines[i]): reason for i, reason in table.problems.items()}
    assert reasons == {
        4: "wrong pixel count",
        7: "non-numeric pixels",
        9: "unknown Usage",
        11: "emotion not in 0..6",
        13: "pixel value outside 0..255",
        14: "wrong number of fields",
    }
    dm = FER2013DataModule(fer_csv, augment=NONE)  # the csv path itself
    with caplog.at_level(logging.WARNING):
        dm.setup()
    [message] = fer_warnings(caplog)
    assert "skipped 6 malformed rows" in message and message.endswith("at lines 4, 7, 9, 11, 13, 14")
    assert dm.describe()["malformed_rows"] == 6 and dm.describe()["train"] == 3


def test_many_malformed_rows_list_twenty_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [f"0,{pixels(k)},{u}" for k, u in enumerate(("Training", "PublicTest", "PrivateTest"))]
    path = write(tmp_path / "fer2013.csv", "emotion,pixels,Usage", rows + ["9,1 2 3,Training"] * 30)
    with caplog.at_level(logging.WARNING):
        FER2013DataModule(path, augment=NONE).setup()
    [message] = fer_warnings(caplog)
    assert "skipped 30 malformed rows" in message
    assert message.endswith("at lines " + ", ".join(str(n) for n in range(5, 25)) + ", ...")


def test_icml_variant_with_leading_spaces(tmp_path: Path) -> None:
    rows = [f"{emotion}, {usage}, {pixels(k)}" for _, emotion, k, usage in GOOD]
    write(tmp_path / "icml_face_data.csv", "emotion, Usage, pixels", rows)
    dm = FER2013DataModule(tmp_path, augment=NONE)  # found in the folder
    dm.setup()
    assert dm.data_train.labels.tolist() == [0, 3, 6]
    assert np.array_equal(dm.data_test.images[1], resized(6))
    assert dm.test_files == ["icml_face_data.csv:line 5", "icml_face_data.csv:line 8"]


def test_file_without_usable_row_names_it(tmp_path: Path) -> None:
    path = write(tmp_path / "fer2013.csv", "emotion,pixels,Usage", ["0,1 2 3,Training", f"9,{pixels(0)},Training"])
    with pytest.raises(UserError, match=re.escape(f"{path}: no usable row")):
        FER2013DataModule(path).setup()
    with pytest.raises(UserError, match="no column pixels"):
        read_fer2013(write(tmp_path / "other.csv", "emotion,image,Usage", ["0,1,Training"]))


def test_missing_files_say_where_and_how(tmp_path: Path) -> None:
    with pytest.raises(UserError) as error:
        FER2013DataModule(tmp_path / "nowhere").setup()
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "fer2013.csv") in message and "data.root=" in message
    assert "challenges-in-representation-learning-facial-expression-recognition-challenge" in message
    fer = write(tmp_path / "fer2013.csv", "emotion,pixels,Usage", fer2013_rows())
    with pytest.raises(UserError, match=r"github\.com/microsoft/FERPlus") as error:
        FERPlusDataModule(fer, tmp_path / "labels" / "fer2013new.csv").setup()
    assert str(tmp_path / "labels" / "fer2013new.csv") in str(error.value) and "data.ferplus_csv=" in str(error.value)


# ------------------------------------------------------------------------------------ FERPlus rules


def votes(**counts: int) -> list[int]:
    return [counts.get(name.lower(), 0) for name in (*FERPLUS_CLASSES, "unknown", "NF")]


def one_hot(name: str) -> list[float]:
    return [float(c == name) for c in FERPLUS_CLASSES]


def spread(**shares: float) -> list[float]:
    return [shares.get(c, 0.0) for c in FERPLUS_CLASSES]


THIRDS = spread(neutral=1 / 3, happiness=1 / 3, surprise=1 / 3)


@pytest.mark.parametrize(
    ("row", "mode", "target"),
    [
        (votes(neutral=6, happiness=1, anger=3), "majority", one_hot("neutral")),
        # 4 of 10 is no majority, but with the single votes removed it is 4 of 7
        (votes(neutral=4, happiness=1, surprise=1, sadness=1, anger=3), "majority", one_hot("neutral")),
        (votes(neutral=4, happiness=4, anger=2), "majority", None),  # tie
        (votes(neutral=5, sadness=3, anger=2), "majority", None),  # exactly half is not a majority
        (votes(neutral=4, happiness=3, surprise=2, sadness=1), "majority", None),  # 4 of 9
        (votes(neutral=2, unknown=8), "majority", None),
        (votes(nf=10), "majority", None),
        # probability: top emotions until 75% of the (outlier-free) votes: 4 + 3 of 9
        (votes(neutral=4, happiness=3, surprise=2, sadness=1), "probability", spread(neutral=4 / 7, happiness=3 / 7)),
        # at most three emotions: the two 2-vote emotions are left out although 9 < 0.75 * 13
        (votes(neutral=3, happiness=3, surprise=3, sadness=2, anger=2), "probability", THIRDS),
        (votes(neutral=3, happiness=3, surprise=2, sadness=2), "probability", None),  # a tie makes four emotions
        (votes(neutral=6, happiness=2, unknown=2), "probability", spread(neutral=0.75, happiness=0.25)),
        (votes(happiness=4, unknown=4, contempt=2), "probability", None),  # unknown ends the pass at 4 of 10
        (votes(neutral=2, unknown=8), "probability", None),
        (votes(nf=10), "probability", None),
        (votes(**dict.fromkeys(FERPLUS_CLASSES, 1)), "probability", None),  # only single votes
    ],
)
def test_ferplus_label_rules(row: list[int], mode: str, target: list[float] | None) -> None:
    result = ferplus_distribution(row, mode)
    if target is None:
        assert result is None
    else:
        assert result is not None and result.shape == (8,)
        np.testing.assert_allclose(result, target)
        assert result.sum() == pytest.approx(1.0)


def test_unknown_label_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"data\.label_mode"):
        ferplus_distribution(votes(neutral=10), "crowd")
    with pytest.raises(ConfigError, match=r"data\.label_mode"):
        FERPlusDataModule("a.csv", "b.csv", label_mode="crowd")


# ---------------------------------------------------------------------------------- FERPlus module

# (FER-2013 Usage, FERPlus Usage, image name, votes or raw text); rows 0..10 are lines 2..12 of both files
PLUS_ROWS = [
    ("Training", "Training", "fer0000000.png", votes(neutral=6, happiness=1, anger=3)),
    ("Training", "Training", "fer0000001.png", votes(neutral=4, happiness=3, surprise=2, sadness=1)),
    ("Training", "Training", "", votes(nf=10)),
    ("Training", "Training", "fer0000002.png", votes(happiness=2, unknown=8)),
    ("Training", "Training", "fer0000003.png", votes(neutral=1, nf=9)),
    ("Training", "Training", "fer0000004.png", votes(happiness=8, surprise=2)),
    ("PublicTest", "PublicTest", "fer0000005.png", votes(surprise=9, fear=1)),
    ("PublicTest", "PublicTest", "fer0000006.png", votes(neutral=4, happiness=3, surprise=2, sadness=1)),
    ("PrivateTest", "PrivateTest", "fer0000007.png", votes(sadness=7, anger=3)),
    ("PrivateTest", "PrivateTest", "fer0000008.png", "x,0,0,0,0,0,0,0,0,10"),
    ("PrivateTest", "Training", "fer0000009.png", votes(contempt=10)),
]


@pytest.fixture
def ferplus_files(tmp_path: Path) -> tuple[Path, Path]:
    fer = write(
        tmp_path / "fer2013.csv", "emotion,pixels,Usage", [f"0,{pixels(k)},{row[0]}" for k, row in enumerate(PLUS_ROWS)]
    )
    lines = [f"{u},{name},{v if isinstance(v, str) else ','.join(map(str, v))}" for _, u, name, v in PLUS_ROWS]
    return fer, write(tmp_path / "fer2013new.csv", VOTE_HEADER, lines)


def test_ferplus_majority(ferplus_files: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    dm = FERPlusDataModule(*ferplus_files, augment=NONE)
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert dm.data_train.labels.tolist() == [0, 1]  # rows 0 and 5
    assert dm.data_val.labels.tolist() == [2]  # row 6; row 7 has no majority
    assert dm.data_test.labels.tolist() == [3]  # row 8
    assert np.array_equal(dm.data_train.images[1], resized(5)) and np.array_equal(dm.data_test.images[0], resized(8))
    np.testing.assert_array_equal(dm.train_targets, [one_hot("neutral"), one_hot("happiness")])
    assert dm.test_files == ["fer2013new.csv:line 10 (fer0000007.png)"]
    info = dm.describe()
    assert (info["malformed_rows"], info["dropped_no_image"], info["dropped_unknown"]) == (2, 1, 4)
    assert info["label_mode"] == "majority" and info["classes"] == list(FERPLUS_CLASSES) and dm.num_classes == 8
    [message] = fer_warnings(caplog)
    assert "fer2013new.csv: skipped 2 malformed rows" in message and message.endswith("at lines 11, 12")
    assert "non-numeric votes: 1" in message and "Usage differs from fer2013.csv: 1" in message


def test_ferplus_probability_mode_draws_training_labels(ferplus_files: tuple[Path, Path]) -> None:
    dm = FERPlusDataModule(*ferplus_files, label_mode="probability", augment=NONE)
    dm.setup()
    assert isinstance(dm.data_train, DrawnLabelDataset)
    assert dm.data_train.labels.tolist() == [0, 0, 1]  # the argmax of rows 0, 1 and 5
    np.testing.assert_allclose(
        dm.train_targets,
        [spread(neutral=2 / 3, anger=1 / 3), spread(neutral=4 / 7, happiness=3 / 7), one_hot("happiness")],
        rtol=1e-6,
    )
    assert dm.train_targets.sum(axis=1) == pytest.approx(1.0)
    assert dm.data_val.labels.tolist() == [2]  # validation and test keep the majority rule
    assert dm.describe()["dropped_unknown"] == 3
    torch.manual_seed(0)
    draws = np.array([dm.data_train[1][1] for _ in range(700)])
    assert set(draws) == {0, 1} and 0.5 < (draws == 0).mean() < 0.65  # 4/7 = 0.57
    assert {dm.data_train[2][1] for _ in range(50)} == {1}


def test_ferplus_offline_expansion_keeps_targets_aligned(ferplus_files: tuple[Path, Path]) -> None:
    dm = FERPlusDataModule(*ferplus_files, label_mode="probability", augment={"mode": "offline_4x"})
    dm.setup()
    assert len(dm.data_train) == len(dm.train_targets) == 12
    assert dm.train_targets[4:8] == pytest.approx(np.tile(spread(neutral=4 / 7, happiness=3 / 7), (4, 1)))


def test_ferplus_files_must_be_aligned(ferplus_files: tuple[Path, Path]) -> None:
    fer, plus = ferplus_files
    plus.write_text("\n".join(plus.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(UserError, match=r"must match fer2013\.csv row by row"):
        FERPlusDataModule(fer, plus).setup()


# ------------------------------------------------------------------------------- configs and Lightning


def test_configs_point_into_the_data_folder(tmp_path: Path) -> None:
    cfg = compose_config("train", ["data=ferplus", "data.label_mode=probability"], tmp_path)
    dm = instantiate(cfg.data, _convert_="all")
    assert isinstance(dm, FERPlusDataModule) and dm.label_mode == "probability"
    assert dm.fer2013_csv == tmp_path / "data" / "fer2013" / "fer2013.csv"
    assert dm.ferplus_csv == tmp_path / "data" / "ferplus" / "fer2013new.csv"
    cfg = compose_config("train", ["data=fer2013"], tmp_path)
    assert instantiate(cfg.data, _convert_="all").root == tmp_path / "data" / "fer2013"


def test_train_loader_batches(fer_csv: Path, tmp_path: Path) -> None:
    cfg = compose_config("train", ["data=fer2013", f"data.root={fer_csv}", "data.batch_size=2"], tmp_path)
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup()
    x, y, g = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.float32 and x.shape == (2, 1, 64, 64) and x.min() >= 0 and x.max() <= 1
    assert y.dtype == g.dtype == torch.int64 and g.tolist() == [0, 0] and set(y.tolist()) <= {0, 3, 6}


def test_lightning_fast_dev_run_without_groups(fer_csv: Path) -> None:
    dm = FER2013DataModule(fer_csv, batch_size=2, augment=NONE)
    module = FERModule(
        {"_target_": "lanmsff.models.LANMSFF", "widths": [12, 12, 12, 12]},
        class_names=dm.class_names,
        group_names=dm.group_names,
        optimizer={"_target_": "torch.optim.Adam", "lr": 1e-3},
    )
    trainer = pl.Trainer(
        accelerator="cpu", fast_dev_run=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(module, datamodule=dm)
    trainer.test(module, datamodule=dm, verbose=False)
    assert module.test_outputs["probs"].shape == (2, 7)
