"""The comparison dashboard (lanmsff.analysis): loading, aggregation, report files, CLI, W&B records."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lanmsff.analysis.cli import main
from lanmsff.analysis.loading import load_runs, load_wandb_runs, record_from_summary, wandb_record
from lanmsff.analysis.report import write_report
from lanmsff.analysis.tables import mean_confusion, summarise

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["afraid", "angry", "disgusted", "happy", "neutral", "sad", "surprised"]
ANGLES = ["FL", "HL", "S", "HR", "FR"]
# per-angle accuracy = overall accuracy + this offset, so per-angle means shift and stds stay
OFFSETS = {"FL": -0.10, "HL": -0.05, "S": 0.05, "HR": 0.0, "FR": -0.08}
ACC = {"lanmsff": [0.80, 0.85, 0.90], "lanmsff_attn_none": [0.70, 0.75, 0.95], "resnet18": [0.60, 0.64]}
COST = {
    "lanmsff": (356294, 601172952, 1.3674),
    "lanmsff_attn_none": (355000, 599000000, 1.36),
    "resnet18": (11170000, 570000000, 42.6),
}


def confusion(correct: int) -> list[list[int]]:
    """7x7 counts: ``correct`` on the diagonal, the rest of 10 per row in the next class."""
    return [[correct if j == i else (10 - correct if j == (i + 1) % 7 else 0) for j in range(7)] for i in range(7)]


def make_summary(
    study: str, variant: str, fold: int | None, acc: float | None, *, angles: list[str] = ANGLES, **extra: Any
) -> dict[str, Any]:
    """A summary.json in the exact format train.py writes (an ok run, or failed when ``acc`` is None).

    ``<model>@<group>`` variants cost what ``<model>`` does; models without an entry in COST a default."""
    params, flops, size = COST.get(variant.rpartition("@")[0] or variant, (1000, 10**6, 0.01))
    failed = acc is None
    metrics = {} if failed else {"test/acc": acc, "test/f1_macro": acc - 0.02, "val/acc_best": acc + 0.01}
    metrics.update({} if failed else {f"test/acc_{a}": acc + OFFSETS[a] for a in angles})
    summary = {
        "status": "failed" if failed else "ok",
        "job_type": "train",
        "study": study,
        "variant": variant,
        "fold": fold,
        "seed": 42,
        "version": "0.1.0",
        "started": "2026-11-24T02:05:41+00:00",
        "output_dir": f"logs/{study}/multiruns/t/{fold}",
        "config": {"task_name": study, "seed": 42, "model": {"name": variant}, "data": {"fold": fold}},
        "params": params,
        "flops": flops,
        "model_size_mb": size,
        "metrics": metrics,
        "best_ckpt": None if failed else "checkpoints/epoch_001.ckpt",
        "duration_s": 12.5,
        "data": {"train": 100, "val": 10, "test": 20, "classes": CLASSES, "groups": angles},
    }
    if failed:
        summary["error"] = "RuntimeError: CUDA out of memory"
    else:
        summary["confusion_matrix"] = confusion(round(10 * acc))
    summary.update(extra)
    return summary


def write(path: Path, summary: dict[str, Any]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "summary.json").write_text(json.dumps(summary))
    return path / "summary.json"


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """Two studies: kdef_ablation (2 variants x 3 folds, 1 failed run, 1 eval job) and kdef_cross_pose
    (resnet18 x 2 folds tested on FL/FR only; one an older summary.json without study/variant/fold/seed)."""
    logs = tmp_path / "logs"
    sweep = logs / "kdef_ablation" / "multiruns" / "2026-11-24_01-00-00_000000"
    job = 0
    for variant in ("lanmsff", "lanmsff_attn_none"):
        for fold, acc in enumerate(ACC[variant]):
            write(sweep / str(job), make_summary("kdef_ablation", variant, fold, acc))
            job += 1
    write(sweep / str(job), make_summary("kdef_ablation", "lanmsff_attn_none", 3, None))
    eval_run = make_summary("kdef_ablation", "lanmsff", 0, 0.10, job_type="eval")
    write(logs / "kdef_ablation" / "runs" / "2026-11-24_02-00-00_000000", eval_run)
    cross = logs / "kdef_cross_pose" / "multiruns" / "2026-11-24_03-00-00_000000"
    write(cross / "0", make_summary("kdef_cross_pose", "resnet18", 0, 0.60, angles=["FL", "FR"]))
    old = make_summary("kdef_cross_pose", "resnet18", 1, 0.64, angles=["FL", "FR"])
    for key in ("study", "variant", "fold", "seed"):
        del old[key]
    write(cross / "1", old)
    return logs


def row(table: pd.DataFrame, variant: str) -> pd.Series:
    rows = table[table["variant"] == variant]
    assert len(rows) == 1
    return rows.iloc[0]


# ---------------------------------------------------------------------------------------------- loading
def test_load_runs_keeps_train_jobs_and_failed_runs(logs: Path) -> None:
    runs = load_runs([logs])
    assert len(runs) == 6 + 1 + 2  # eval job ignored, failed run kept
    assert set(runs["job_type"]) == {"train"}
    assert runs.groupby("study").size().to_dict() == {"kdef_ablation": 7, "kdef_cross_pose": 2}
    failed = runs[runs["status"] == "failed"]
    assert len(failed) == 1
    assert failed.iloc[0]["error"] == "RuntimeError: CUDA out of memory"
    assert failed.iloc[0]["variant"] == "lanmsff_attn_none" and failed.iloc[0]["fold"] == 3
    assert len(load_runs([logs], job_type="all")) == 10
    assert len(load_runs([logs], job_type="eval")) == 1


def test_older_summaries_fall_back_to_the_config(logs: Path) -> None:
    runs = load_runs([logs / "kdef_cross_pose"])
    assert list(runs["study"]) == ["kdef_cross_pose"] * 2
    assert list(runs["variant"]) == ["resnet18"] * 2
    assert list(runs["fold"]) == [0, 1]
    assert list(runs["seed"]) == [42, 42]


def test_record_fallbacks_without_config() -> None:
    record = record_from_summary({"status": "failed", "config": {"task_name": "s", "variant": "v"}})
    assert (record["study"], record["variant"], record["status"]) == ("s", "v", "failed")
    assert record["error"] == "status: failed" and record["job_type"] == "train"


def test_paths_may_overlap_and_name_single_runs(logs: Path) -> None:
    sweep = next((logs / "kdef_ablation" / "multiruns").iterdir())
    assert len(load_runs([logs, sweep])) == 9  # a file found twice counts once
    assert len(load_runs([sweep / "0"])) == 1
    assert len(load_runs([sweep / "0" / "summary.json"])) == 1


def test_unreadable_summary_is_skipped_with_a_warning(logs: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = logs / "kdef_ablation" / "multiruns" / "broken" / "0"
    bad.mkdir(parents=True)
    (bad / "summary.json").write_text("{not json")
    assert len(load_runs([logs])) == 9
    assert "not a readable summary.json" in caplog.text


# ---------------------------------------------------------------------------------------------- aggregation
def test_summarise_counts_means_and_stds(logs: Path) -> None:
    table = summarise(load_runs([logs]))
    assert list(zip(table["study"], table["variant"])) == [
        ("kdef_ablation", "lanmsff"),
        ("kdef_ablation", "lanmsff_attn_none"),
        ("kdef_cross_pose", "resnet18"),
    ]
    ref, none, resnet = row(table, "lanmsff"), row(table, "lanmsff_attn_none"), row(table, "resnet18")
    assert (ref["runs"], ref["failed"]) == (3, 0)
    assert (none["runs"], none["failed"]) == (3, 1)
    assert (resnet["runs"], resnet["failed"]) == (2, 0)
    # lanmsff: 0.80 0.85 0.90 -> mean 0.85, sample std sqrt((0.05^2 + 0 + 0.05^2) / 2) = 0.05
    assert ref["acc_mean"] == pytest.approx(0.85)
    assert ref["acc_std"] == pytest.approx(0.05)
    # attn_none: 0.70 0.75 0.95 -> mean 0.80, std sqrt((0.01 + 0.0025 + 0.0225) / 2) = sqrt(0.0175)
    assert none["acc_mean"] == pytest.approx(0.80)
    assert none["acc_std"] == pytest.approx(math.sqrt(0.0175))
    assert none["f1_macro_mean"] == pytest.approx(0.78)
    assert none["val_acc_best_mean"] == pytest.approx(0.81)
    # resnet18: 0.60 0.64 -> mean 0.62, std sqrt(2 * 0.02^2) = 0.02 * sqrt(2)
    assert resnet["acc_mean"] == pytest.approx(0.62)
    assert resnet["acc_std"] == pytest.approx(0.02 * math.sqrt(2))


def test_summarise_per_angle_columns(logs: Path) -> None:
    table = summarise(load_runs([logs]))
    for angle in ANGLES:
        assert f"acc_{angle}_mean" in table and f"acc_{angle}_std" in table
    ref, resnet = row(table, "lanmsff"), row(table, "resnet18")
    for angle, offset in OFFSETS.items():
        assert ref[f"acc_{angle}_mean"] == pytest.approx(0.85 + offset)
        assert ref[f"acc_{angle}_std"] == pytest.approx(0.05)
    assert resnet["acc_FL_mean"] == pytest.approx(0.52)
    assert resnet["acc_FR_mean"] == pytest.approx(0.54)
    assert all(pd.isna(resnet[f"acc_{a}_mean"]) for a in ("HL", "S", "HR"))  # not in its test sets
    columns = [c for c in table if c.startswith("acc_") and c.endswith("_mean")]
    assert columns == ["acc_mean", *(f"acc_{a}_mean" for a in ANGLES)]


def test_summarise_carries_the_cost(logs: Path) -> None:
    table = summarise(load_runs([logs]))
    for variant, (params, flops, size) in COST.items():
        r = row(table, variant)
        assert (r["params"], r["flops"], r["model_size_mb"]) == (params, flops, pytest.approx(size))


def test_single_run_has_no_std(tmp_path: Path) -> None:
    write(tmp_path / "r", make_summary("s", "lanmsff", 0, 0.9))
    r = row(summarise(load_runs([tmp_path])), "lanmsff")
    assert r["acc_mean"] == pytest.approx(0.9) and pd.isna(r["acc_std"])


def test_mean_confusion_is_the_mean_of_row_normalised_matrices(logs: Path) -> None:
    runs = load_runs([logs])
    mean, std, classes = mean_confusion(runs[runs["variant"] == "lanmsff"])
    assert classes == CLASSES
    # diagonals 8/10, 8/10 (0.85 rounds to 8), 9/10
    assert np.diag(mean) == pytest.approx([(0.8 + 0.8 + 0.9) / 3] * 7)
    assert mean.sum(axis=1) == pytest.approx([1.0] * 7)
    assert std[0, 0] == pytest.approx(np.std([0.8, 0.8, 0.9], ddof=1))
    single = runs[(runs["variant"] == "lanmsff") & (runs["fold"] == 0)]
    assert mean_confusion(single)[1] is None


# ---------------------------------------------------------------------------------------------- report
def test_write_report_files(logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    paths = write_report(load_runs([logs]), out)
    for name in ("report.md", "report.html", "comparison.csv", "runs.csv"):
        assert paths[name] == out / name and paths[name].is_file()
    figures = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert figures == sorted(k for k in paths if k.endswith(".png"))
    assert "figures/kdef_ablation/accuracy_per_angle.png" in figures
    assert "figures/kdef_ablation/accuracy_vs_params.png" in figures
    assert "figures/kdef_ablation/accuracy_vs_flops.png" in figures
    for variant in ("lanmsff", "lanmsff_attn_none"):
        assert f"figures/kdef_ablation/confusion_{variant}.png" in figures
    assert "figures/kdef_cross_pose/confusion_resnet18.png" in figures
    assert not list(out.rglob("*.tmp"))

    comparison = pd.read_csv(out / "comparison.csv")
    assert len(comparison) == 3
    assert row(comparison, "lanmsff")["acc_mean"] == pytest.approx(0.85)
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 9
    assert list(runs.loc[runs["status"] == "failed", "error"]) == ["RuntimeError: CUDA out of memory"]


def test_report_markdown_has_tables_and_image_links(logs: Path, tmp_path: Path) -> None:
    paths = write_report(load_runs([logs]), tmp_path / "report")
    text = paths["report.md"].read_text()
    assert "## kdef_ablation" in text and "## kdef_cross_pose" in text and "## Failed runs" in text
    assert "| lanmsff | 3 | 0 | 85.00 ± 5.00 |" in text
    assert "| lanmsff_attn_none | 3 | 1 | 80.00 ± 13.23 |" in text
    assert "| resnet18 | 2 | 0 | 62.00 ± 2.83 |" in text
    assert "356,294" in text and "0.601" in text
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (tmp_path / "report" / link).is_file()


def test_report_html_is_self_contained(logs: Path, tmp_path: Path) -> None:
    paths = write_report(load_runs([logs]), tmp_path / "report")
    text = paths["report.html"].read_text()
    for name in ("lanmsff", "lanmsff_attn_none", "resnet18", "kdef_ablation", "kdef_cross_pose"):
        assert f">{name}<" in text  # visible text of a table cell or heading
    images = re.findall(r'<img [^>]*src="([^"]*)"', text)
    charts = text.count('class="plotly-graph-div"')  # a figure is an interactive chart or an inline image
    assert len(images) + charts == len([k for k in paths if k.endswith(".png")]) and charts > 0
    assert all(src.startswith("data:image/png;base64,") for src in images)
    lowered = text.lower()
    # the page is interactive (inline plotly and table script) but loads nothing: no external script,
    # stylesheet, import or font (headless Chromium with the network off checks the same at run time;
    # the inlined plotly library holds link strings it would only use on a click)
    assert not re.search(r"<script[^>]+src=", lowered) and "<link" not in lowered
    markup = re.sub(r"<script[^>]*>.*?</script>", "", lowered, flags=re.S)
    assert not re.search(r"(src|href)=[\"']https?://", markup) and "@import" not in markup and "url(" not in markup
    assert "CUDA out of memory" in text


def test_report_of_only_failed_runs(tmp_path: Path) -> None:
    write(tmp_path / "runs" / "0", make_summary("s", "lanmsff", 0, None))
    paths = write_report(load_runs([tmp_path / "runs"]), tmp_path / "report")
    assert "| lanmsff | 0 | 1 |" in paths["report.md"].read_text()


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "nope" in err and "Traceback" not in err


def test_cli_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no summary.json found" in err and "Traceback" not in err


def test_cli_only_eval_jobs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write(tmp_path / "e", make_summary("s", "lanmsff", 0, 0.5, job_type="eval"))
    assert main([str(tmp_path)]) == 2
    assert "no readable one of job type 'train'" in capsys.readouterr().err


def test_cli_writes_the_report(logs: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(logs), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "lanmsff_attn_none" in printed and "85.00 ± 5.00" in printed
    assert str(tmp_path / "out" / "report.md") in printed and str(tmp_path / "out" / "report.html") in printed
    assert (tmp_path / "out" / "report.html").is_file()


def test_cli_default_out_dir(logs: Path) -> None:
    assert main([str(logs / "kdef_ablation")]) == 0
    assert (logs / "kdef_ablation" / "report" / "report.html").is_file()
    assert main([str(logs / "kdef_ablation")]) == 0  # again: the report folder holds no summary.json


def test_cli_as_module(logs: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "lanmsff.analysis"]
    good = subprocess.run([*cmd, str(logs), "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env)
    assert good.returncode == 0, good.stderr
    assert "report.html" in good.stdout
    bad = subprocess.run([*cmd, str(tmp_path / "missing")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    assert "no such file or folder" in bad.stderr and "Traceback" not in bad.stderr


# ---------------------------------------------------------------------------------------------- W&B
def fake_run(state: str = "finished", **summary: Any) -> SimpleNamespace:
    """What wandb.Api().runs() yields, as far as the conversion uses it."""
    config = {
        "task_name": "kdef_ablation",
        "variant": "lanmsff_attn_none",
        "job_type": "train",
        "seed": 7,
        "model": {"name": "lanmsff_attn_none"},
        "data": {"fold": 2, "protocol": "subject"},
        "optim": {},
        "protocol_version": 2,  # logged flat by train.py beside the config
        "selection": "validation",
        "params": 355000,
        "flops": 599000000,
        "model_size_mb": 1.36,
    }
    metrics = {"test/acc": 0.75, "test/f1_macro": 0.7, "test/acc_FL": 0.6, "test/acc_S": 0.9, "val/acc_best": 0.8}
    media = {"test/confusion_matrix": {"_type": "image-file", "path": "media/x.png"}, "_runtime": 321.0}
    return SimpleNamespace(
        name="fresh-fox-3", state=state, config=config, summary={**metrics, **media, "epoch": 4, **summary}
    )


def test_wandb_record_from_a_run_object() -> None:
    record = wandb_record(fake_run())
    assert (record["study"], record["variant"], record["fold"], record["seed"]) == (
        "kdef_ablation",
        "lanmsff_attn_none",
        2,
        7,
    )
    assert (record["status"], record["error"], record["job_type"]) == ("ok", None, "train")
    assert (record["params"], record["flops"], record["model_size_mb"]) == (355000, 599000000, 1.36)
    assert record["test/acc"] == 0.75 and record["test/acc_FL"] == 0.6 and record["val/acc_best"] == 0.8
    assert "test/confusion_matrix" not in record and "epoch" not in record  # media and non-metrics dropped
    assert record["duration_s"] == 321.0 and record["source"] == "wandb:fresh-fox-3"
    assert record["confusion_matrix"] is None
    assert (record["protocol"], record["protocol_version"], record["selection"]) == ("subject", 2, "validation")


def test_wandb_record_of_a_crashed_run_and_raw_config() -> None:
    run = fake_run(state="crashed")
    run.config = {k: {"value": v, "desc": None} for k, v in run.config.items()}  # raw W&B format
    run.group = "kdef_ablation"
    record = wandb_record(run)
    assert record["status"] == "crashed" and record["error"] == "W&B run state: crashed"
    assert record["variant"] == "lanmsff_attn_none" and record["fold"] == 2


def test_load_wandb_runs_with_a_fake_api() -> None:
    calls = []

    class FakeApi:
        def runs(self, path: str, filters: dict) -> list[SimpleNamespace]:
            calls.append((path, filters))
            return [fake_run(), fake_run(**{"test/acc": 0.85}), fake_run(state="failed")]

    runs = load_wandb_runs("team/lanmsff", "kdef_ablation", api=FakeApi())
    # a bare study selects its groups of every sweep (<study>/<sweep id>) and the study's own group
    either = [{"group": "kdef_ablation"}, {"group": {"$regex": "^kdef_ablation/"}}]
    assert calls == [("team/lanmsff", {"$or": either})]
    r = row(summarise(runs), "lanmsff_attn_none")
    assert (r["runs"], r["failed"]) == (2, 1)
    assert r["acc_mean"] == pytest.approx(0.80) and r["acc_std"] == pytest.approx(0.05 * math.sqrt(2))


def test_cli_wandb_offline(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main(["--wandb", "team/lanmsff", "--group", "kdef_ablation"]) == 2
    err = capsys.readouterr().err
    assert "WANDB_MODE=offline" in err and "Traceback" not in err


def test_cli_wandb_without_api_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["--wandb", "team/lanmsff", "--group", "kdef_ablation"]) == 2
    assert "API key" in capsys.readouterr().err


def test_cli_wandb_bad_path(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    assert main(["--wandb", "lanmsff"]) == 2
    assert "expected ENTITY/PROJECT" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- browser
CHROMIUM = Path("/usr/bin/chromium")


BROWSER_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent (apt-get install chromium)")
def test_report_page_works_offline_in_headless_chromium(logs: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from lanmsff.analysis.comparisons import study_statistics

    runs = load_runs([logs])
    html_file = write_report(runs, tmp_path / "report")["report.html"]
    url = html_file.resolve().as_uri()
    verdicts = study_statistics(runs[runs["study"] == "kdef_ablation"]).verdicts
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_FLAGS)
        context = browser.new_context(offline=True, viewport={"width": 1280, "height": 2000})
        page = context.new_page()
        page.on("request", lambda request: requested.append(request.url))
        page.goto(url, wait_until="load")
        assert requested == [url]  # nothing but the file itself: no CDN, no font, no image fetched
        text = page.inner_text("body")
        for name in ("lanmsff", "lanmsff_attn_none", "resnet18", "kdef_ablation", "kdef_cross_pose", *verdicts):
            assert name in text
        assert page.locator(".plotly-graph-div .main-svg").count() > 0  # the inlined plotly drew its charts

        table = page.locator("section[data-study='kdef_ablation'] table.sortable").first
        header = table.locator("th", has_text="accuracy %").first
        header.click()
        assert table.locator("tbody tr td:first-child").all_inner_texts() == ["lanmsff_attn_none", "lanmsff"]
        header.click()
        assert table.locator("tbody tr td:first-child").all_inner_texts() == ["lanmsff", "lanmsff_attn_none"]

        page.fill("#filter", "attn_none")
        assert table.locator("tbody tr:visible td:first-child").all_inner_texts() == ["lanmsff_attn_none"]
        page.select_option("#study", "kdef_cross_pose")
        assert not page.locator("section[data-study='kdef_ablation']").is_visible()
        browser.close()
    assert len(verdicts) == 1 and verdicts[0].startswith("lanmsff_attn_none vs lanmsff: ")
