"""The comparison report's reference: named by the study, per direction for ``<model>@<direction>`` variants
(kdef_cross_pose), and said, not replaced, when it has no usable runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lanmsff.analysis import stats
from lanmsff.analysis.cli import main
from lanmsff.analysis.comparisons import reference_model, split_variant, study_statistics, variant_groups
from lanmsff.analysis.loading import load_runs

from .test_compare import make_summary, write

STUDY = "kdef_cross_pose"
TO_PROFILE, TO_FRONTAL = ["FL", "FR"], ["S", "HL", "HR"]
# fold accuracies; the baselines trail lanmsff by a fold-dependent amount, so the tests have variance
ACC = {
    "lanmsff@to_profile": [0.80, 0.84, 0.82],
    "mobilenetv3_small@to_profile": [0.70, 0.77, 0.71],
    "resnet18@to_profile": [0.60, 0.66, 0.65],
    "lanmsff@to_frontal": [0.90, 0.88, 0.91],
    "mobilenetv3_small@to_frontal": [0.85, 0.80, 0.86],
}


def cross_pose_study(folder: Path, acc: dict[str, list[float | None]] = ACC) -> Path:
    """A kdef_cross_pose multirun: ``<model>@<direction>`` variants x folds (None: a failed run)."""
    for variant, values in acc.items():
        angles = TO_PROFILE if variant.endswith("@to_profile") else TO_FRONTAL
        for fold, value in enumerate(values):
            write(folder / f"{variant}_{fold}", make_summary(STUDY, variant, fold, value, angles=angles))
    return folder


def test_variant_names_split_into_model_and_group() -> None:
    assert split_variant("lanmsff@to_profile") == ("lanmsff", "to_profile")
    assert split_variant("lanmsff") == ("lanmsff", "")
    assert split_variant("@x") == ("@x", "") and split_variant("x@") == ("x@", "")
    groups = variant_groups(["b@to_profile", "a@to_frontal", "plain", "a@to_profile"])
    assert groups == {"": ["plain"], "to_frontal": ["a@to_frontal"], "to_profile": ["a@to_profile", "b@to_profile"]}


def test_the_reference_rule() -> None:
    runs = pd.DataFrame(
        {"variant": ["lanmsff@a", "resnet18@a", "ghostnet@a"], "status": ["failed", "ok", "ok"], "reference": None}
    )
    assert reference_model(runs) == "lanmsff"  # the default model, even with no successful run
    assert reference_model(runs, "resnet18") == "resnet18"  # --reference, by model
    assert reference_model(runs, "resnet18@b") == "resnet18"  # or by any variant of that model
    assert reference_model(runs, "unknown") == "lanmsff"
    runs.loc[:, "reference"] = "ghostnet"  # what the runs record beats the default
    assert reference_model(runs) == "ghostnet"
    without = pd.DataFrame({"variant": ["zeta", "beta", "alpha"], "status": ["ok", "ok", "failed"]})
    assert reference_model(without) == "beta"  # no lanmsff: the first successful model by name


def test_cross_pose_variants_are_compared_within_their_direction(tmp_path: Path) -> None:
    pytest.importorskip("scikit_posthocs")
    runs = load_runs([cross_pose_study(tmp_path / "logs")])
    result = study_statistics(runs)
    assert result.kind == "folds" and result.reference == "lanmsff"
    assert result.references == {"to_frontal": "lanmsff@to_frontal", "to_profile": "lanmsff@to_profile"}
    compared = sorted(v.split(":")[0] for v in result.verdicts if not v.startswith("Friedman"))
    assert compared == [
        "mobilenetv3_small@to_frontal vs lanmsff@to_frontal",
        "mobilenetv3_small@to_profile vs lanmsff@to_profile",
        "resnet18@to_profile vs lanmsff@to_profile",
    ]
    assert not any("no paired results" in v for v in result.verdicts)
    assert "(corrected t-test, 3 folds, Holm-adjusted)" in result.verdicts[0]
    # Friedman within a direction with 3 variants (to_profile) only, with the caveat of folds as blocks
    assert set(result.friedman) == {"to_profile"}
    assert list(result.friedman["to_profile"].mean_ranks.index) == [
        "lanmsff@to_profile",
        "mobilenetv3_small@to_profile",
        "resnet18@to_profile",
    ]
    [friedman] = [v for v in result.verdicts if v.startswith("Friedman")]
    assert "within to_profile" in friedman and stats.FOLD_BLOCKS_CAVEAT in friedman
    # the per-view columns of each direction are compared on the views its test sets hold
    assert ("mobilenetv3_small@to_frontal", "test/acc_HL") in result.marks
    assert ("mobilenetv3_small@to_profile", "test/acc_FL") in result.marks
    assert ("mobilenetv3_small@to_profile", "test/acc_HL") not in result.marks


def test_a_cd_diagram_per_direction_carries_the_caveat(tmp_path: Path) -> None:
    pytest.importorskip("scikit_posthocs")
    from lanmsff.analysis.report import write_report

    paths = write_report(load_runs([cross_pose_study(tmp_path / "logs")]), tmp_path / "report")
    assert "figures/kdef_cross_pose/critical_difference_to_profile.png" in paths
    html = paths["report.html"].read_text()
    assert f"Critical-difference diagram (test accuracy, to_profile; {stats.FOLD_BLOCKS_CAVEAT})" in html
    lines = paths["report.md"].read_text().split("\n")
    start = lines.index(next(x for x in lines if x.startswith("| variant | runs |"))) + 2
    lead = [x.split(" | ")[0].removeprefix("| ") for x in lines[start : start + 5]]
    assert lead == [  # by direction, its reference first
        "lanmsff@to_frontal",
        "mobilenetv3_small@to_frontal",
        "lanmsff@to_profile",
        "mobilenetv3_small@to_profile",
        "resnet18@to_profile",
    ]
    assert lines[start + 5] == ""


def test_a_reference_without_usable_runs_is_said_and_the_report_written(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # the smoke-study situation: lanmsff@to_frontal failed on one fold and lacks test/acc on the other
    acc = {**ACC, "lanmsff@to_frontal": [None, 0.9]}
    logs = cross_pose_study(tmp_path / "logs", acc)
    lacking = make_summary(STUDY, "lanmsff@to_frontal", 1, 0.9, angles=TO_FRONTAL)
    del lacking["metrics"]["test/acc"]
    write(logs / "lanmsff@to_frontal_1", lacking)
    assert main([str(logs), "--out", str(tmp_path / "report")]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "ValueError" not in captured.err
    text = (tmp_path / "report" / "report.md").read_text()
    section = text[text.index(f"## {STUDY}") :]
    line = next(x for x in section.split("\n") if "has no usable runs" in x)
    assert line.startswith("- lanmsff@to_frontal (the reference of to_frontal) has no usable runs (")
    assert "1 run not successful" in line and "1 test/acc missing" in line
    assert line.endswith("no paired results for mobilenetv3_small@to_frontal vs lanmsff@to_frontal")
    assert "- mobilenetv3_small@to_profile vs lanmsff@to_profile: " in section  # the other direction is compared
    assert "mobilenetv3_small@to_frontal vs mobilenetv3_small" not in section  # nothing stands in for the reference


def test_a_missing_reference_in_one_direction(tmp_path: Path) -> None:
    acc = {k: v for k, v in ACC.items() if k != "lanmsff@to_frontal"}
    result = study_statistics(load_runs([cross_pose_study(tmp_path / "logs", acc)]))
    assert "lanmsff@to_frontal (the reference of to_frontal) has no usable runs (no runs)" in result.verdicts[0]
    assert any(v.startswith("mobilenetv3_small@to_profile vs lanmsff@to_profile: ") for v in result.verdicts)


def test_a_reference_lacking_a_per_view_metric_is_not_an_error(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    for fold, (a, b) in enumerate([(0.8, 0.7), (0.82, 0.75), (0.85, 0.7)]):
        write(logs / f"ref{fold}", make_summary("s", "lanmsff", fold, a, angles=["S"]))
        write(logs / f"other{fold}", make_summary("s", "resnet18", fold, b, angles=["S", "FL"]))
    result = study_statistics(load_runs([logs]))
    assert result.verdicts[0].startswith("resnet18 vs lanmsff: -")
    assert ("resnet18", "test/acc_S") in result.marks and ("resnet18", "test/acc_FL") not in result.marks
