"""The dashboard as a scientific instrument: calibration, temperature scaling, cross-dataset tests, the
checkpoint choice of the paper protocol, and the report's verdicts, single-split tests and figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lanmsff.analysis.loading import load_runs
from lanmsff.analysis.report import write_report
from lanmsff.data.classes import map_classes
from lanmsff.data.fer import FER2013_CLASSES, FERPLUS_CLASSES
from lanmsff.data.kdef_names import EXPRESSION_NAMES
from lanmsff.training.calibration import calibration_metrics, fit_temperature

from .conftest import TINY_TRAIN, run_script


# ---------------------------------------------------------------------------------------------- calibration
def _calibrated_predictor(n: int, classes: int, rng: np.random.Generator, sharpen: float = 1.0) -> tuple:
    """Logits whose softmax is the true class distribution (sharpen=1), and labels drawn from it."""
    logits = torch.from_numpy(rng.normal(0, 2.0, (n, classes)))
    probs = logits.softmax(dim=1)
    labels = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(int(rng.integers(1 << 30)))).ravel()
    return logits * sharpen, labels


def test_ece_is_near_zero_when_calibrated_and_large_when_overconfident() -> None:
    rng = np.random.default_rng(0)
    logits, labels = _calibrated_predictor(20_000, 7, rng)
    calibrated = calibration_metrics(logits.softmax(1), labels)["test/ece"]
    overconfident = calibration_metrics((4 * logits).softmax(1), labels)["test/ece"]
    assert calibrated < 0.015  # sampling noise only
    assert overconfident > 0.15


def test_metrics_per_group_and_brier_of_a_perfect_predictor() -> None:
    targets = torch.tensor([0, 1, 2, 0])
    groups = torch.tensor([0, 0, 1, 1])
    perfect = torch.nn.functional.one_hot(targets, 3).float()
    metrics = calibration_metrics(perfect, targets, groups, ["FL", "FR"])
    assert metrics["test/brier"] == pytest.approx(0.0) and metrics["test/ece"] == pytest.approx(0.0, abs=1e-6)
    assert {"test/ece_FL", "test/nll_FR", "test/brier_FL"} <= set(metrics)
    uniform = torch.full((4, 3), 1 / 3)
    assert calibration_metrics(uniform, targets)["test/nll"] == pytest.approx(np.log(3))


def test_temperature_scaling_lowers_ece_on_held_out_data() -> None:
    rng = np.random.default_rng(1)
    val_logits, val_labels = _calibrated_predictor(5_000, 7, rng, sharpen=3.0)  # overconfident by 3x
    test_logits, test_labels = _calibrated_predictor(5_000, 7, rng, sharpen=3.0)
    temperature = fit_temperature(val_logits, val_labels)  # fitted on validation only
    assert temperature == pytest.approx(3.0, rel=0.1)
    before = calibration_metrics(test_logits.softmax(1), test_labels)["test/ece"]
    after = calibration_metrics((test_logits / temperature).softmax(1), test_labels)["test/ece"]
    assert after < before / 3
    assert torch.equal((test_logits / temperature).argmax(1), test_logits.argmax(1))  # no prediction changes


# ---------------------------------------------------------------------------------------------- vocabularies
def test_class_mapping_between_the_three_vocabularies() -> None:
    kdef_on_ferplus = map_classes(EXPRESSION_NAMES, FERPLUS_CLASSES)
    assert len(kdef_on_ferplus.shared) == 7 and kdef_on_ferplus.unmapped_data == ("contempt",)
    assert not kdef_on_ferplus.unmapped_model
    ferplus_on_kdef = map_classes(FERPLUS_CLASSES, EXPRESSION_NAMES)
    assert ferplus_on_kdef.unmapped_model == ("contempt",) and not ferplus_on_kdef.unmapped_data
    kdef_on_fer = map_classes(EXPRESSION_NAMES, FER2013_CLASSES)
    assert kdef_on_fer.data_index[kdef_on_fer.shared.index("fear")] == FER2013_CLASSES.index("fear")
    assert kdef_on_fer.model_index[kdef_on_fer.shared.index("fear")] == EXPRESSION_NAMES.index("afraid")
    assert map_classes(EXPRESSION_NAMES, EXPRESSION_NAMES).identity


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def paper_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny run tested as the authors do (last weights), also with the best-val checkpoint, calibrated."""
    workdir = tmp_path_factory.mktemp("paper_run")
    args = [*TINY_TRAIN, "trainer.max_epochs=2", "test_checkpoint=last", "test_both=true", "calibrate=temperature"]
    result = run_script("train.py", *args, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    [path] = (workdir / "logs" / "train" / "runs").glob("*/summary.json")
    return json.loads(path.read_text()) | {"run_dir": str(path.parent)}


@pytest.mark.slow
def test_last_weights_are_tested_with_the_best_checkpoint_beside_them(paper_run: dict) -> None:
    metrics = paper_run["metrics"]
    assert paper_run["test_checkpoint"] == {"choice": "last", "path": None}
    assert {"test/acc", "test_best/acc", "test_best/f1_macro"} <= set(metrics)
    assert 0 <= metrics["test_best/acc"] <= 1


@pytest.mark.slow
def test_a_run_records_calibration_and_the_fitted_temperature(paper_run: dict) -> None:
    metrics, run_dir = paper_run["metrics"], Path(paper_run["run_dir"])
    assert {"test/ece", "test/nll", "test/brier", "test/ece_S", "test_temperature/ece"} <= set(metrics)
    assert paper_run["temperature"] > 0
    assert (run_dir / "reliability.png").is_file() and (run_dir / "reliability_temperature.png").is_file()
    curves = pd.read_csv(run_dir / "csv" / "metrics.csv")
    assert "test/ece" in curves.columns  # in the loggers too


def _ferplus_files(folder: Path) -> tuple[Path, Path]:
    """A FER-2013 CSV and its FERPlus votes: 12 private-test faces, 3 of them voted contempt."""
    rng = np.random.default_rng(0)
    rows, votes = [], []
    for i in range(16):
        usage = "Training" if i < 2 else "PublicTest" if i < 4 else "PrivateTest"
        rows.append(f"0,{' '.join(map(str, rng.integers(0, 256, 48 * 48)))},{usage}")
        counts = [0] * 10
        counts[7 if i in (4, 5, 6) else i % 7] = 10  # contempt for three test faces, else one of the others
        votes.append(f"{usage},fer{i:07d}.png,{','.join(map(str, counts))}")
    fer = folder / "fer2013.csv"
    fer.write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    plus = folder / "fer2013new.csv"
    header = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    plus.write_text(header + "\n" + "\n".join(votes) + "\n")
    return fer, plus


@pytest.mark.slow
def test_a_kdef_checkpoint_is_tested_on_ferplus_over_the_shared_classes(paper_run: dict, tmp_path: Path) -> None:
    fer, plus = _ferplus_files(tmp_path)
    [ckpt] = Path(paper_run["run_dir"]).glob("checkpoints/epoch_*.ckpt")
    args = [f"ckpt_path={ckpt}", "data=ferplus", f"data.fer2013_csv={fer}", f"data.ferplus_csv={plus}", "logger=csv"]
    result = run_script("eval.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "contempt" in result.stderr  # the unmapped class is reported
    [path] = (tmp_path / "logs" / "eval" / "runs").glob("*/summary.json")
    summary = json.loads(path.read_text())
    mapping = summary["class_mapping"]
    assert mapping["unmapped_data_classes"] == ["contempt"] and mapping["left_out_images"] == 3
    assert mapping["images"] == 9 and len(mapping["shared"]) == 7
    assert len(summary["data"]["fingerprint"]) == 64  # of the two CSV files as read
    predictions = pd.read_csv(path.parent / "predictions.csv")
    assert len(predictions) == 9 and "contempt" not in set(predictions["label"])
    accuracy = (predictions["label"] == predictions["predicted"]).mean()
    assert summary["metrics"]["test/acc"] == pytest.approx(accuracy)


# ---------------------------------------------------------------------------------------------- the report
def _study(folder: Path, name: str, accuracies: dict[str, list[float]], *, seeds: bool = False) -> None:
    for variant, values in accuracies.items():
        for k, acc in enumerate(values):
            fold, seed = (None, k) if seeds else (k, 0)
            summary = {
                "status": "ok", "job_type": "train", "study": name, "variant": variant, "fold": fold, "seed": seed,
                "metrics": {"test/acc": acc, "test/f1_macro": acc}, "params": 1000, "flops": 10**6,
                "data": {"train_images": 4410, "train": 4410, "test": 490, "dataset": "kdef"},
            }  # fmt: skip
            run = folder / name / f"{variant}_{k}"
            run.mkdir(parents=True)
            (run / "summary.json").write_text(json.dumps(summary))


def test_a_planted_effect_is_better_and_noise_is_not(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    base = 0.80 + rng.normal(0, 0.02, 10)
    _study(tmp_path / "logs", "planted", {"lanmsff": list(base + 0.05), "lanmsff_attn_none": list(base)})
    _study(
        tmp_path / "logs", "noise", {"lanmsff": list(base + rng.normal(0, 0.005, 10)), "lanmsff_attn_none": list(base)}
    )
    text = write_report(load_runs([tmp_path / "logs"]), tmp_path / "report")["report.md"].read_text()
    planted = text[text.index("## planted") :]
    noise = text[text.index("## noise") : text.index("## planted")]
    assert "- lanmsff_attn_none vs lanmsff: -5.0 points" in planted and planted.split("\n")[2].endswith(": worse")
    assert "no detectable difference" in noise.split("\n")[2]


def _predictions(run: Path, correct: list[bool]) -> None:
    frame = pd.DataFrame(
        {
            "file": [f"img{i}" for i in range(len(correct))],
            "label": "happy",
            "predicted": ["happy" if c else "sad" for c in correct],
        }
    )
    frame.to_csv(run / "predictions.csv", index=False)


def test_a_single_split_study_gets_bootstrap_cis_and_mcnemar(tmp_path: Path) -> None:
    _study(tmp_path / "logs", "fer2013", {"lanmsff": [0.9, 0.9], "resnet18": [0.5, 0.5]}, seeds=True)
    for k in range(2):
        _predictions(tmp_path / "logs" / "fer2013" / f"lanmsff_{k}", [True] * 90 + [False] * 10)
        _predictions(tmp_path / "logs" / "fer2013" / f"resnet18_{k}", [True] * 50 + [False] * 50)
    text = write_report(load_runs([tmp_path / "logs"]), tmp_path / "report")["report.md"].read_text()
    assert "bootstrap 95% CI" in text and "McNemar" in text
    assert "resnet18 vs lanmsff: -40.0 points" in text and "p < 0.001" in text and ": worse" in text


def test_learning_curves_pareto_and_cross_dataset_figures(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    _study(logs, "cross", {"a": [0.8, 0.82], "b": [0.7, 0.71]})
    for run in (logs / "cross").iterdir():
        (run / "csv").mkdir()
        epochs = pd.DataFrame(
            {"epoch": [0, 0, 1, 1], "train/loss": [2.0, None, 1.5, None], "val/loss": [None, 2.1, None, 1.7]}
        )
        epochs.to_csv(run / "csv" / "metrics.csv", index=False)
        summary = json.loads((run / "summary.json").read_text())
        summary["metrics"].update({"cross/fer2013/acc": 0.4, "cross/kdef/acc": summary["metrics"]["test/acc"]})
        (run / "summary.json").write_text(json.dumps(summary))
    paths = write_report(load_runs([logs]), tmp_path / "report")
    for name in ("learning_curves", "cross_dataset", "accuracy_vs_params"):
        assert f"figures/cross/{name}.png" in paths and f"figures/cross/{name}.pdf" in paths
    html = paths["report.html"].read_text()
    assert "Cross-dataset test accuracy" in html and "Pareto front" in html


@pytest.mark.slow
def test_eval_with_test_time_augmentation(paper_run: dict, tmp_path: Path) -> None:
    [ckpt] = Path(paper_run["run_dir"]).glob("checkpoints/epoch_*.ckpt")
    scores = {}
    for tta in ("none", "flip"):
        (tmp_path / tta).mkdir()
        result = run_script("eval.py", f"ckpt_path={ckpt}", f"tta={tta}", "logger=csv", cwd=tmp_path / tta)
        assert result.returncode == 0, result.stderr[-3000:]
        [path] = (tmp_path / tta / "logs" / "eval" / "runs").glob("*/summary.json")
        summary = json.loads(path.read_text())
        predictions = pd.read_csv(path.parent / "predictions.csv")
        assert len(predictions) == summary["data"]["test"] and "class_mapping" not in summary
        scores[tta] = summary["metrics"]["test/acc"]
        assert scores[tta] == pytest.approx((predictions["label"] == predictions["predicted"]).mean())
    assert 0 <= scores["flip"] <= 1 and scores["none"] == pytest.approx(paper_run["metrics"]["test_best/acc"])
