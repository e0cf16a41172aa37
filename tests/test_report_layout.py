"""The comparison report reads in one screen: per study the verdicts, one lead table with the difference to the
reference and its significance in each cell, the details folded away, and the method explained once."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pytest

from lanmsff.analysis import stats
from lanmsff.analysis.comparisons import Mark
from lanmsff.analysis.lead import lead_cell
from lanmsff.analysis.loading import load_runs
from lanmsff.analysis.report import write_report

from .test_compare import make_summary, write

FOLDS = 10


def two_variant_study(folder: Path, name: str, effect: float, seed: int = 7) -> None:
    """lanmsff = lanmsff_attn_none + ``effect`` on every fold (fold noise shared), 10 folds, with UAR."""
    base = 0.80 + np.random.default_rng(seed).normal(0, 0.02, FOLDS)
    wobble = np.random.default_rng(seed + 1).normal(0, 0.005, FOLDS)
    for variant, values in (("lanmsff", base + effect + wobble), ("lanmsff_attn_none", base)):
        for fold, acc in enumerate(values):
            summary = make_summary(name, variant, fold, float(acc))
            summary["metrics"]["test/uar"] = float(acc) - 0.01
            summary["data"]["train"], summary["data"]["test"] = 4410, 490
            write(folder / name / f"{variant}_{fold}", summary)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("layout")
    two_variant_study(folder / "logs", "planted", 0.05)
    two_variant_study(folder / "logs", "noise", 0.0)
    paths = write_report(load_runs([folder / "logs"]), folder / "report")
    return {name: paths[name].read_text() for name in ("report.md", "report.html")}


def _section(text: str, study: str) -> str:
    start = text.index(f"## {study}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _lead_rows(section: str) -> list[list[str]]:
    """The rows of the first markdown table of a section (the lead table), as cells."""
    lines = section.split("\n")
    first = next(i for i, line in enumerate(lines) if line.startswith("| variant |"))
    rows = []
    for line in lines[first + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return [lines[first].strip("|").split(" | "), *rows]


def test_lead_cell_format() -> None:
    assert lead_cell(0.801, 0.02) == "80.1 ± 2.0"
    assert lead_cell(0.801, 0.02, Mark(-1.23, True)) == "80.1 ± 2.0 (−1.2*)"
    assert lead_cell(0.801, float("nan"), Mark(0.5, False)) == "80.1 (+0.5)"
    assert lead_cell(None, None) == "–" and lead_cell(float("nan"), 0.1) == "–"


def test_a_two_variant_study_leads_with_one_table(report: dict[str, str]) -> None:
    planted = _section(report["report.md"], "planted")
    header, *rows = _lead_rows(planted)
    assert [h.strip() for h in header[:5]] == ["variant", "runs", "accuracy %", "UAR %", "macro F1 %"]
    assert [h.strip() for h in header[5:]] == ["FL %", "HL %", "S %", "HR %", "FR %"]
    assert [r[0] for r in rows] == ["lanmsff", "lanmsff_attn_none"]  # one row per variant
    reference, other = rows
    assert not any("(" in cell for cell in reference[2:])  # the reference has no difference to itself
    for cell in other[2:]:  # -5 points on every fold: significant on every metric, marked in every cell
        assert re.fullmatch(r"\d+\.\d ± \d+\.\d \(−\d\.\d\*\)", cell), cell
    # the verdict (the same paired difference) comes before the table, the legend after it
    verdict = re.search(r"- lanmsff_attn_none vs lanmsff: -(\d\.\d) points .*: worse\n", planted)
    assert verdict and 4.5 < float(verdict[1]) < 5.5
    assert other[2].endswith(f"(−{verdict[1]}*)") and other[3].endswith(f"(−{verdict[1]}*)")  # UAR = acc - 1
    assert verdict.start() < planted.index("| variant |") < planted.index("* = significant at α = 0.05")
    noise = _lead_rows(_section(report["report.md"], "noise"))[2]
    assert noise[0] == "lanmsff_attn_none" and not any("*" in cell for cell in noise[2:])  # no effect: no star


def test_the_method_is_explained_once(report: dict[str, str]) -> None:
    for text in map(html.unescape, report.values()):
        assert text.count("Nadeau & Bengio") == 1
        assert text.count(stats.WILCOXON_LABEL) == 1
        assert "distribution-free" not in text and "second opinion" not in text
        assert text.count("How to read this report") == 2  # the pointer at the top and the section at the end
    md = report["report.md"]
    assert md.index("## How to read this report") > md.index("## planted")


def test_per_test_details_fold_open(report: dict[str, str]) -> None:
    for text in report.values():
        folded = re.findall(r"<details>(.*?)</details>", text, flags=re.S)
        assert len(folded) == 2 * 3  # per study: paired tests, all metrics, provenance (no confusion per view here)
        studies = text[: text.rindex("How to read this report")]  # the method names the tests' columns too
        outside = re.sub(r"<details>.*?</details>", "", studies, flags=re.S)
        for detail in ("p (Holm)", "95% CI", "best val acc %", "where the runs came from"):
            assert detail not in outside and any(detail in f for f in folded), detail
    page = report["report.html"]
    tests = next(f for f in re.findall(r"<details>(.*?)</details>", page, flags=re.S) if "p (Holm)" in f)
    assert "<summary>Paired tests: p, Holm-adjusted p, 95% CI" in tests
    assert tests.count("<table") == 1  # one table for all metrics, not one per metric
    for metric in ("test accuracy", "UAR", "macro F1", "accuracy FL", "accuracy FR"):
        assert f"<td>{metric}</td>" in tests
    assert "<th>p (Wilcoxon over folds, descriptive)</th>" in tests
    # the first sortable table of a study (what the browser test clicks) is the lead table
    planted = page[page.index('data-study="planted"') :]
    first = planted[planted.index("<table") : planted.index("</table>")]
    assert "<th>accuracy %</th><th>UAR %</th>" in first and "(−" in first and "p (Holm)" not in first
