"""Numbers a user can trust by default: person-independent defaults, refusals of settings that select on the
test set, UAR as scikit-learn defines it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, recall_score

from lanmsff.data.cli import build_parser
from lanmsff.data.datamodule import KDEFDataModule
from lanmsff.data.splits import SplitSpec
from lanmsff.errors import UserError
from lanmsff.tasks import train as train_task
from lanmsff.tasks.train import check_no_test_selection
from lanmsff.training.metrics import confusion_matrix, confusion_per_group, recall_metrics, unweighted_average_recall

from .conftest import TINY_TRAIN, compose_config, run_script

CLASSES = ("AN", "DI", "AF", "HA", "NE", "SA", "SU")
# a fixed, imbalanced example: class 6 never occurs, class 5 is predicted but absent from the targets
TARGETS = torch.tensor([0, 0, 0, 0, 1, 1, 2, 3, 3, 3, 4, 4])
PREDICTED = torch.tensor([0, 0, 1, 5, 1, 0, 2, 3, 3, 2, 4, 5])
GROUPS = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1])


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_uar_equals_balanced_accuracy_on_a_fixed_example() -> None:
    confusion = confusion_matrix(PREDICTED, TARGETS, 7)
    expected = balanced_accuracy_score(TARGETS.numpy(), PREDICTED.numpy())
    assert (
        unweighted_average_recall(confusion)
        == pytest.approx(expected)
        == pytest.approx((0.5 + 0.5 + 1 + 2 / 3 + 0.5) / 5)
    )
    metrics = recall_metrics(PREDICTED, TARGETS, GROUPS, CLASSES, ("left", "right"))
    recalls = recall_score(TARGETS.numpy(), PREDICTED.numpy(), labels=[0, 1, 2, 3, 4], average=None)
    assert [metrics[f"test/recall_{c}"] for c in CLASSES[:5]] == pytest.approx(list(recalls))
    assert "test/recall_SA" not in metrics and "test/recall_SU" not in metrics  # no sample: no recall
    for index, name in enumerate(("left", "right")):
        chosen = index == GROUPS
        group_uar = balanced_accuracy_score(TARGETS[chosen].numpy(), PREDICTED[chosen].numpy())
        assert metrics[f"test/uar_{name}"] == pytest.approx(group_uar), name
    per_group = confusion_per_group(PREDICTED, TARGETS, GROUPS, 7, ("left", "right", "empty"))
    assert list(per_group) == ["left", "right"] and sum(map(sum, per_group["left"])) == 6


def test_person_independent_is_the_default_everywhere(tmp_path: Path) -> None:
    """The config, the data module, the split spec and lanmsff-data splits agree on the protocol."""
    cfg = compose_config("train", ["data=kdef"], tmp_path)
    demo = compose_config("train", ["experiment=demo"], tmp_path)
    assert cfg.data.protocol == demo.data.protocol == SplitSpec().protocol == "subject"
    assert KDEFDataModule(tmp_path).spec.protocol == "subject"
    assert build_parser().parse_args(["splits", str(tmp_path)]).protocol == "subject"
    assert SplitSpec().person_independent and not SplitSpec().identities_shared
    assert SplitSpec(protocol="stratified").identities_shared and SplitSpec(protocol="paper").selection == "test-fold"


@pytest.mark.parametrize(
    ("overrides", "keys"),
    [
        (["data.protocol=paper"], ["data.protocol=paper", "test_checkpoint=best", "test_checkpoint=last"]),
        (
            ["data.protocol=paper", "test_checkpoint=last", "calibrate=temperature"],
            ["data.protocol=paper", "calibrate=temperature"],
        ),
    ],
)
def test_settings_that_select_on_the_test_set_are_refused(
    tmp_path: Path, overrides: list[str], keys: list[str]
) -> None:
    result = run_script("train.py", *TINY_TRAIN, *overrides, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert all(key in result.stderr for key in keys) and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # refused before any data was generated or read


def test_stratified_runs_say_that_identities_are_shared_and_tuning_is_recorded(tmp_path: Path) -> None:
    result = run_script("train.py", *TINY_TRAIN, "data.protocol=stratified", "tuned_on_fold=0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    [path] = (tmp_path / "logs" / "train" / "runs").glob("*/summary.json")
    summary = json.loads(path.read_text())
    assert summary["data"]["identities_shared"] is True and summary["selection"] == "validation"
    assert summary["hparams_tuned_on_fold"] == 0
    assert "identities shared" in result.stdout and "data.identities_shared=true" in result.stderr


def test_the_paper_protocol_records_test_fold_selection(tmp_path: Path) -> None:
    result = run_script("train.py", *TINY_TRAIN, "experiment=kdef_paper", "data.num_folds=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    [path] = (tmp_path / "logs" / "kdef_paper" / "runs").glob("*/summary.json")
    summary = json.loads(path.read_text())
    assert summary["selection"] == "test-fold" and summary["data"]["identities_shared"] is True
    assert summary["test_checkpoint"]["choice"] == "last" and "test_best/acc" in summary["metrics"]
    assert "selection: test-fold" in result.stdout


def test_a_search_on_the_test_fold_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """hparams_search under data.protocol=paper would maximise a score measured on the test fold."""
    cfg = compose_config("train", ["data.protocol=paper", "test_checkpoint=last"], tmp_path)
    check_no_test_selection(cfg)  # the paper protocol itself, with the final weights, is allowed
    monkeypatch.setattr(train_task, "_hparams_search", lambda: "lanmsff_optuna")
    with pytest.raises(UserError, match=r"data.protocol=paper .* hparams_search would maximise val/acc_best"):
        check_no_test_selection(cfg)
