"""Labels that travel with the numbers of the comparison report: identities shared between training and test,
test-fold selection, protocol versions kept apart, UAR and recall per class, per-view confusion matrices and
hyper-parameters tuned on people that test folds contain."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lanmsff.analysis.cli import main
from lanmsff.analysis.comparisons import study_statistics
from lanmsff.analysis.loading import load_runs, record_from_summary
from lanmsff.analysis.pooling import separate_protocol_versions
from lanmsff.analysis.report import write_report
from lanmsff.analysis.tables import mean_group_confusions

from .test_compare import CLASSES, confusion, make_summary, write

ACC = {"lanmsff": [0.80, 0.86, 0.83], "lanmsff_attn_none": [0.72, 0.80, 0.74]}


def study(
    folder: Path,
    name: str,
    acc: dict[str, list[float]] = ACC,
    *,
    data: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    tag: str = "",
    **top: Any,
) -> Path:
    """Runs of ``name``: each variant x fold of ``acc``, with ``data``, ``metrics`` and top-level fields added."""
    for variant, values in acc.items():
        for fold, value in enumerate(values):
            summary = make_summary(name, variant, fold, value)
            summary["data"].update(data or {})
            summary["metrics"].update(metrics or {})
            summary.update(top)
            write(folder / name / f"{variant}_{fold}{tag}", summary)
    return folder


def section(text: str, name: str) -> str:
    start = text.index(f"## {name}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def lead_row(text: str, variant: str) -> list[str]:
    """The cells of ``variant``'s row in the first table after the verdicts (the lead table)."""
    first = text.index("| variant |")
    line = next(x for x in text[first:].split("\n") if x.startswith((f"| {variant} |", f"| {variant} ⚠")))
    return [c.strip() for c in line.strip("|").split(" | ")]


# ---------------------------------------------------------------------------------------------- reading the fields
@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ({}, (None, None, False, "validation")),  # no fold protocol (FER-2013): nothing to mark, no version
        ({"data": {"protocol": "stratified"}}, ("stratified", 1, True, "validation")),  # old run: derived
        ({"data": {"protocol": "paper"}}, ("paper", 1, True, "test-fold")),
        ({"config": {"data": {"protocol": "paper"}}}, ("paper", 1, True, "test-fold")),  # from the config
        ({"data": {"protocol": "subject", "protocol_version": 2}}, ("subject", 2, False, "validation")),
        # a current run that failed before its data was read: never split, so no version to keep apart
        ({"schema_version": 4, "config": {"data": {"protocol": "subject"}}}, ("subject", None, False, "validation")),
        ({"data": {"protocol": "stratified", "identities_shared": False}}, ("stratified", 1, False, "validation")),
        ({"data": {"protocol": "paper"}, "selection": "validation"}, ("paper", 1, True, "validation")),  # as written
    ],
)
def test_protocol_fields_and_their_defaults(summary: dict, expected: tuple) -> None:
    record = record_from_summary({"status": "ok", **summary})
    assert (record["protocol"], record["protocol_version"], record["identities_shared"], record["selection"]) == (
        expected
    )


def test_tuning_fields() -> None:
    assert record_from_summary({"hparams_tuned_on_fold": 0})["hparams_tuned_on_fold"] == 0
    tuned = record_from_summary({"tuned_on": {"study": "hparams_search", "fold": 3, "people": ["F01", "M02"]}})
    assert tuned["hparams_tuned_on_fold"] == 3
    assert record_from_summary({"config": {"tuned_on_fold": 1}})["hparams_tuned_on_fold"] == 1
    assert record_from_summary({"config": {"tuned_on_fold": None}})["hparams_tuned_on_fold"] is None
    assert record_from_summary({"config": {"hparams_search": "lanmsff_optuna"}})["hparams_search"] == "lanmsff_optuna"
    assert record_from_summary({"config": {"hparams_search": None}})["hparams_search"] is None


# ---------------------------------------------------------------------------------------------- identities shared
def test_runs_that_share_identities_are_marked_everywhere(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    logs = study(tmp_path / "logs", "kdef_stratified", data={"protocol": "stratified"})
    study(logs, "kdef_subject", data={"protocol": "subject", "identities_shared": False})
    assert main([str(logs), "--out", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    assert printed.count("⚠ identities shared (stratified)") >= 2  # both variants of that study, in the console
    assert "these runs split the images, not the people" in " ".join(printed.split())  # its footnote
    text = (tmp_path / "report" / "report.md").read_text()
    shared, honest = section(text, "kdef_stratified"), section(text, "kdef_subject")
    assert lead_row(shared, "lanmsff")[0] == "lanmsff ⚠ identities shared (stratified)"
    assert lead_row(shared, "lanmsff_attn_none")[0] == "lanmsff_attn_none ⚠ identities shared (stratified)"
    assert "\n⚠ identities shared: these runs split the images, not the people" in shared
    verdict = next(x for x in shared.split("\n") if x.startswith("- lanmsff_attn_none vs lanmsff"))
    assert verdict.endswith("[⚠ identities shared (lanmsff_attn_none, lanmsff)]")
    assert "| lanmsff ⚠ identities shared (stratified) | 3 | 0 | 83.00 ± 3.00 |" in shared  # the full table too
    assert "⚠" not in honest
    runs = pd.read_csv(tmp_path / "report" / "runs.csv")
    assert set(zip(runs["study"], runs["identities_shared"])) == {("kdef_stratified", True), ("kdef_subject", False)}


# ---------------------------------------------------------------------------------------------- test-fold selection
def test_test_fold_selection_is_labelled_and_a_mixed_study_says_so(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    study(logs, "mixed", {"lanmsff": ACC["lanmsff"]}, data={"protocol": "paper"}, metrics={"test_best/acc": 0.9})
    study(logs, "mixed", {"lanmsff_attn_none": ACC["lanmsff_attn_none"]}, data={"protocol": "subject"})
    paths = write_report(load_runs([logs]), tmp_path / "report")
    text = section(paths["report.md"].read_text(), "mixed")
    assert lead_row(text, "lanmsff")[0] == "lanmsff ⚠ identities shared (paper) ⚠ selection: test-fold"
    assert lead_row(text, "lanmsff_attn_none")[0] == "lanmsff_attn_none"
    assert "accuracy, best-val ckpt % (selection: test-fold)" in text  # test_best/... under the paper protocol
    assert (
        "⚠ This study mixes protocols (lanmsff: paper, selection test-fold; lanmsff_attn_none: subject, selection "
        "validation)" in text
    )
    assert "test-fold-selected numbers are paired with validation-selected ones" in text
    verdict = next(x for x in text.split("\n") if x.startswith("- lanmsff_attn_none vs lanmsff"))
    assert "⚠ mixes protocols: selection validation (lanmsff_attn_none) vs test-fold (lanmsff)" in verdict
    assert "\n⚠ selection: test-fold: these runs validated on their test fold" in text
    comparison = pd.read_csv(tmp_path / "report" / "comparison.csv").set_index("variant")
    assert comparison.loc["lanmsff", "selection"] == "test-fold"
    assert comparison.loc["lanmsff_attn_none", "selection"] == "validation"


def test_one_protocol_says_nothing_about_mixing(tmp_path: Path) -> None:
    logs = study(tmp_path / "logs", "kdef_paper", data={"protocol": "paper"})
    text = write_report(load_runs([logs]), tmp_path / "report")["report.md"].read_text()
    assert "mixes protocols" not in text and "⚠ selection: test-fold" in text


# ---------------------------------------------------------------------------------------------- protocol versions
def test_protocol_versions_are_never_pooled_nor_paired(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    logs = tmp_path / "logs"
    study(logs, "kdef_subject", data={"protocol": "subject", "fingerprint": "old"}, tag="_v1")
    newer = {"lanmsff": [0.60, 0.66, 0.63], "lanmsff_attn_none": [0.62, 0.70, 0.65]}
    study(logs, "kdef_subject", newer, data={"protocol": "subject", "protocol_version": 2, "fingerprint": "new"})
    # pooled, each variant would mix two data fingerprints and be refused; kept apart, nothing is mixed
    assert main([str(logs), "--out", str(tmp_path / "report")]) == 0
    assert "kept apart" in caplog.text  # a warning, on stderr
    text = (tmp_path / "report" / "report.md").read_text()
    assert (
        "kdef_subject: runs of data protocol versions 1, 2 kept apart, never pooled or paired (the file list and the "
        "fold assignment changed with protocol version 2): 6 run(s) of version 1 as 'kdef_subject (protocol v1)', "
        "6 run(s) of version 2 as 'kdef_subject (protocol v2)'." in text
    )
    comparison = pd.read_csv(tmp_path / "report" / "comparison.csv").set_index(["study", "variant"])
    assert comparison.loc[("kdef_subject (protocol v1)", "lanmsff"), "acc_mean"] == pytest.approx(0.83)
    assert comparison.loc[("kdef_subject (protocol v2)", "lanmsff"), "acc_mean"] == pytest.approx(0.63)
    v1, v2 = section(text, "kdef_subject (protocol v1)"), section(text, "kdef_subject (protocol v2)")
    assert "- lanmsff_attn_none vs lanmsff: -7.7 points" in v1 and "(corrected t-test, 3 folds" in v1
    assert "- lanmsff_attn_none vs lanmsff: +2.7 points" in v2 and "(corrected t-test, 3 folds" in v2
    assert "#### runs left out" not in v1 + v2  # no run was paired across versions, nor left out as a duplicate
    assert "| subject v1 |" in v1 and "| subject v2 |" in v2  # the provenance table names the version


def test_data_sets_without_fold_protocols_are_not_split_by_version(tmp_path: Path) -> None:
    """A cross-dataset study: KDEF runs record protocol version 2, FER-2013 runs no protocol at all."""
    logs = tmp_path / "logs"
    study(logs, "cross_dataset", data={"protocol": "subject", "protocol_version": 2, "fingerprint": "k"})
    fer = {"lanmsff": [0.61, 0.62, 0.63], "lanmsff_attn_none": [0.60, 0.61, 0.62]}
    study(logs, "cross_dataset", fer, data={"dataset": "fer2013", "fingerprint": "f"}, tag="_fer")
    runs = load_runs([logs])
    separated, lines = separate_protocol_versions(runs)
    assert lines == [] and set(separated["study"]) == {"cross_dataset"}


# ---------------------------------------------------------------------------------------------- UAR and recall
def test_uar_in_the_lead_table_and_recall_per_class_in_the_details(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    recall = {f"test/recall_{c}": 0.5 + 0.05 * i for i, c in reversed(list(enumerate(CLASSES)))}  # any order
    metrics = {"test/uar": 0.75, "test/uar_FL": 0.6, "test/uar_S": 0.9, **recall}
    study(logs, "new", data={"protocol": "subject"}, metrics=metrics)
    study(logs, "old", data={"protocol": "subject"})  # runs from before UAR
    text = write_report(load_runs([logs]), tmp_path / "report")["report.md"].read_text()
    new, old = section(text, "new"), section(text, "old")
    assert lead_row(new, "lanmsff")[3] == "75.0 ± 0.0" and lead_row(new, "lanmsff_attn_none")[3] == "75.0 ± 0.0 (+0.0)"
    assert lead_row(old, "lanmsff")[3] == "–" and lead_row(old, "lanmsff_attn_none")[3] == "–"
    header = next(x for x in new.split("\n") if x.startswith("| variant | afraid %"))
    assert header == "| variant | " + " | ".join(f"{c} %" for c in CLASSES) + " |"  # in the runs' class order
    assert "| lanmsff | 50.00 ± 0.00 | 55.00 ± 0.00 |" in new
    assert "| variant | FL % | S % |" in new and "| lanmsff | 60.00 ± 0.00 | 90.00 ± 0.00 |" in new  # UAR per view
    assert "#### recall per class" not in old and "#### UAR per view" not in old


# ---------------------------------------------------------------------------------------------- confusion per view
def test_mean_confusion_per_view(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    for fold, (fl, s) in enumerate([(6, 9), (8, 10)]):
        summary = make_summary("views", "lanmsff", fold, 0.8)
        summary["confusion_matrix_per_group"] = {"S": confusion(s), "FL": confusion(fl)}
        write(logs / f"lanmsff_{fold}", summary)
    write(logs / "old", make_summary("views", "lanmsff_attn_none", 0, 0.7))  # no per-view matrices: no table
    runs = load_runs([logs])
    found = mean_group_confusions(runs[runs["variant"] == "lanmsff"])
    assert list(found) == ["FL", "S"]  # KDEF's angle order
    mean, std, classes = found["FL"]
    assert classes == CLASSES and np.diag(mean) == pytest.approx([0.7] * 7) and std[0, 0] == pytest.approx(0.1414, 1e-3)
    text = write_report(runs, tmp_path / "report")["report.md"].read_text()
    folded = re.search(r"<summary>Per-view confusion matrices.*?</details>", text, flags=re.S)
    assert folded is not None
    table = folded[0]
    assert "| view · true class | " + " | ".join(CLASSES) + " |" in table
    assert "| FL · afraid | 70.0 | 30.0 | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 |" in table
    assert "| S · surprised | 5.0 | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 | 95.0 |" in table
    assert table.index("| FL · afraid") < table.index("| S · afraid") and "lanmsff_attn_none" not in table


# ---------------------------------------------------------------------------------------------- tuning
TUNED = (
    "hyper-parameters were tuned on the validation people of fold {}; test folds that contain those people are not "
    "independent of the tuning"
)


def test_hyperparameters_tuned_on_a_fold_are_said(tmp_path: Path) -> None:
    logs = study(tmp_path / "logs", "tuned", data={"protocol": "subject"}, hparams_tuned_on_fold=0)
    study(logs, "tuned_on", data={"protocol": "subject"}, tuned_on={"study": "hparams_search", "fold": 2})
    study(logs, "untuned", data={"protocol": "subject"})
    text = write_report(load_runs([logs]), tmp_path / "report")["report.md"].read_text()
    assert TUNED.format(0) in section(text, "tuned") and TUNED.format(2) in section(text, "tuned_on")
    assert "hyper-parameters were tuned" not in section(text, "untuned")


def test_the_reference_and_lines_come_from_the_study_statistics(tmp_path: Path) -> None:
    logs = study(tmp_path / "logs", "s", data={"protocol": "stratified"})
    result = study_statistics(load_runs([logs]))
    assert result.references == {"": "lanmsff"} and result.marks[("lanmsff_attn_none", "test/acc")].difference < 0
