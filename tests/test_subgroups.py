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


def _subgroup_runs() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        {
            "variant": ["lanmsff"] * 3,
            "n_train": [100] * 3,
            "n_test": [20] * 3,
            "test/subgroup/gender/female/acc": [0.80, 0.70, 0.90],
            "test/subgroup/gender/male/acc": [0.60, 0.65, 0.70],
            "test/subgroup/gender/female/uar": [0.75, 0.70, 0.85],
            "test/subgroup/gender/male/uar": [0.55, 0.60, 0.70],
            "test/subgroup/gender/female/images": [10, 10, 12],
            "test/subgroup/gender/male/images": [10, 10, 8],
        }
    )


def test_the_report_tables_subgroups_with_their_counts() -> None:
    from lanmsff.analysis.subgroups import subgroup_table

    table = subgroup_table(_subgroup_runs())
    assert table is not None
    rows = {row[2]: row for row in table.rows}
    assert rows["female"][3] == "80.00 ± 10.00" and rows["male"][3] == "65.00 ± 5.00"
    assert rows["female"][4] == "76.67 ± 7.64"
    assert rows["female"][5:] == ["11", "32", "3"] and rows["male"][5:] == ["9", "28", "3"]


def test_the_subgroup_gap_gets_the_corrected_test_of_a_worked_example() -> None:
    from scipy import stats as scipy_stats

    from lanmsff.analysis.subgroups import gap_table

    table = gap_table(_subgroup_runs())
    assert table is not None
    ((variant, attribute, gap, mean, ci, p, p_holm, runs, _note),) = table.rows
    assert (variant, attribute, gap, runs) == ("lanmsff", "gender", "female - male", "3")
    # differences 20, 5, 20 points: mean 15, variance 75; corrected se = sqrt(75 * (1/3 + 20/100)) = sqrt(40)
    t = 15 / 40**0.5
    assert mean == "+15.00" and float(p) == pytest.approx(2 * scipy_stats.t.sf(t, 2), rel=1e-2)
    half = scipy_stats.t.ppf(0.975, 2) * 40**0.5
    assert ci == f"[{15 - half:+.2f}, {15 + half:+.2f}]"
    assert p == p_holm, "one pair: Holm changes nothing"


def test_one_run_gives_subgroups_but_no_gap_test() -> None:
    from lanmsff.analysis.subgroups import gap_table, subgroup_tables

    runs = _subgroup_runs().iloc[:1]
    ((*_, p, _, runs_count, note),) = gap_table(runs).rows
    assert p == "no test" and runs_count == "1" and "no test" in note
    assert len(subgroup_tables(runs)) == 2
    assert subgroup_tables(runs.drop(columns=[c for c in runs if "subgroup" in c])) == []
