"""Accuracy and UAR per subgroup of the tested people (gender from KDEF's and RaFD's file names), with counts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from lanmsff.records import SUMMARY_FILE
from lanmsff.training.metrics import subgroup_metrics


def test_subgroup_metrics_on_known_counts() -> None:
    predicted = torch.tensor([0, 1, 1, 2, 0, 0])
    targets = torch.tensor([0, 1, 2, 2, 1, 0])
    groups = [
        {"gender": "female", "age": "adult"},
        {"gender": "female", "age": "child"},
        {"gender": "female", "age": "adult"},
        {"gender": "male"},
        {"gender": "male", "age": "adult"},
        {"gender": "male", "age": "adult"},
    ]
    result = subgroup_metrics(predicted, targets, groups, 3)
    assert result["gender"]["female"] == {"images": 3, "acc": pytest.approx(2 / 3), "uar": pytest.approx(2 / 3)}
    assert result["gender"]["male"] == {"images": 3, "acc": pytest.approx(2 / 3), "uar": pytest.approx(2 / 3)}
    assert result["age"]["adult"]["images"] == 4 and result["age"]["child"]["images"] == 1  # one image has no age
    assert result["age"]["adult"]["acc"] == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="subgroup entries"):
        subgroup_metrics(predicted, targets, groups[:2], 3)


@pytest.mark.slow
def test_a_kdef_run_records_accuracy_and_uar_per_gender(trained_checkpoint: Path) -> None:
    path = trained_checkpoint.parent.parent / SUMMARY_FILE  # the session's tiny run (conftest.TINY_TRAIN)
    summary = json.loads(path.read_text())
    metrics = summary["metrics"]
    # 2 of the 4 synthetic people (one woman, one man: folds are dealt per gender) x 2 sessions x 35 images
    assert metrics["test/subgroup/gender/female/images"] == metrics["test/subgroup/gender/male/images"] == 70
    table = pd.read_csv(path.parent / "predictions.csv")
    table["gender"] = ["female" if Path(f).name[1] == "F" else "male" for f in table["file"]]
    for gender, rows in table.groupby("gender"):
        prefix = f"test/subgroup/gender/{gender}"
        assert metrics[f"{prefix}/acc"] == pytest.approx((rows["label"] == rows["predicted"]).mean())
        assert metrics[f"{prefix}/uar"] == pytest.approx(balanced_accuracy_score(rows["label"], rows["predicted"]))
