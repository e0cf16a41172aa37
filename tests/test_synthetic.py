"""The synthetic KDEF-layout generator: exact layout, names, determinism, learnability."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lanmsff.data.kdef import index_kdef
from lanmsff.data.kdef_names import ANGLES, EXPRESSIONS, KDEFName, parse_name
from lanmsff.data.synthetic import generate, render_face, synthetic_names
from lanmsff.errors import UserError


def test_tree_layout_and_names_parse_back(tiny_tree: Path) -> None:
    images = tiny_tree / "KDEF_and_AKDEF" / "KDEF"
    files = sorted(images.glob("*/*"))
    assert len(files) == 4 * 2 * 7 * 5
    assert sorted(p.name for p in images.iterdir()) == ["AF01", "AF02", "AM01", "AM02", "BF01", "BF02", "BM01", "BM02"]
    expected = set(synthetic_names(4))
    parsed = set()
    for f in files:
        name = parse_name(f.name)
        assert name is not None, f.name
        assert f.parent.name == name.folder
        assert f.name == name.filename  # upper-case .JPG as in KDEF
        parsed.add(name)
    assert parsed == expected
    counts = Counter((n.expression, n.angle) for n in parsed)
    assert set(counts) == {(e, a) for e in EXPRESSIONS for a in ANGLES} and set(counts.values()) == {8}


def test_images_are_kdef_sized_rgb_jpegs(tiny_tree: Path) -> None:
    path = tiny_tree / "KDEF_and_AKDEF" / "KDEF" / "AF01" / "AF01ANS.JPG"
    assert path.read_bytes()[:3] == b"\xff\xd8\xff"
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image.shape == (762, 562, 3)


def test_index_counts_subjects_across_sessions(tiny_tree: Path) -> None:
    index = index_kdef(tiny_tree)  # the folder holding KDEF_and_AKDEF
    assert len(index) == 280 and not index.skipped
    assert index.subjects == ["F01", "F02", "M01", "M02"]
    assert index.per_angle() == {a: 56 for a in ANGLES}


def test_rendering_is_deterministic_and_varies() -> None:
    name = KDEFName("A", "F", 3, "HA", "S")
    first, again = render_face(name), render_face(name)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, render_face(name, seed=1))
    other_session = render_face(KDEFName("B", "F", 3, "HA", "S"))
    other_expression = render_face(KDEFName("A", "F", 3, "SU", "S"))
    assert np.abs(first.astype(int) - other_session).mean() > 1
    assert np.abs(first.astype(int) - other_expression).mean() > 1


def test_generation_is_skipped_when_identical(tiny_tree: Path) -> None:
    marker = tiny_tree / "KDEF_and_AKDEF" / "KDEF" / "AF01" / "AF01ANS.JPG"
    before = marker.stat().st_mtime_ns
    generate(tiny_tree, identities=4, seed=0)
    assert marker.stat().st_mtime_ns == before


def test_a_smaller_tree_replaces_a_larger_one_in_the_same_folder(tmp_path: Path) -> None:
    generate(tmp_path, identities=2, seed=0, workers=1)
    generate(tmp_path, identities=1, seed=0, workers=1)
    assert len(index_kdef(tmp_path).records) == 70  # not 140: the second person's files are gone


def test_jobs_that_ask_for_the_same_tree_at_once_all_get_it_whole(tmp_path: Path) -> None:
    """The jobs of a sweep start together on one data.root: one draws the tree, none fails or clears it."""
    script = "import sys; from lanmsff.data.synthetic import generate; generate(sys.argv[1], identities=3, workers=1)"
    jobs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stderr=subprocess.PIPE) for _ in range(3)]
    errors = [job.communicate()[1].decode() for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0, 0], errors
    assert len(index_kdef(tmp_path).records) == 3 * 70


def test_a_folder_that_the_generator_did_not_write_is_never_touched(tmp_path: Path) -> None:
    from lanmsff.data.synthetic import kdef_dir
    from lanmsff.errors import UserError

    images = kdef_dir(tmp_path)
    (images / "AF01").mkdir(parents=True)
    (images / "AF01" / "AF01NES.JPG").write_bytes(b"a real photo")
    with pytest.raises(UserError, match="not a tree written by the synthetic generator"):
        generate(tmp_path, identities=1)
    assert (images / "AF01" / "AF01NES.JPG").read_bytes() == b"a real photo"


def test_cli_rejects_impossible_identity_count(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lanmsff.data.synthetic", "--out", str(tmp_path), "--identities", "71"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "--identities must be between 1 and 70" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_small_cnn_learns_expressions_of_unseen_people(tmp_path: Path) -> None:
    """Classes are learnable: a small CNN beats chance (14%) clearly on held-out identities.

    Runs score 0.57-0.65 (seeds 0-3); BatchNorm statistics are re-estimated on the training set after
    training (``update_bn``), because a few hundred steps leave running averages that lag the weights.
    """
    from torch.optim.swa_utils import update_bn

    from lanmsff.data.datamodule import SyntheticKDEFDataModule

    torch.manual_seed(0)
    dm = SyntheticKDEFDataModule(tmp_path, identities=10, protocol="subject", num_folds=5, fold=0, batch_size=32)
    dm.prepare_data()
    dm.setup()
    assert len(dm.subjects["test"]) == 2 and not set(dm.subjects["test"]) & set(dm.subjects["train"])
    layers = []
    for cin, cout in ((1, 32), (32, 64), (64, 96)):
        layers += [
            torch.nn.Conv2d(cin, cout, 3, padding=1),
            torch.nn.BatchNorm2d(cout),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        ]
    net = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(96, 7))
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(15):
        net.train()
        for x, y, _g in dm.train_dataloader():
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
    update_bn(((x,) for x, _y, _g in dm.train_dataloader()), net)
    net.eval()
    with torch.no_grad():
        hits = [(net(x).argmax(1) == y).float() for x, y, _g in dm.test_dataloader()]
    accuracy = torch.cat(hits).mean().item()
    assert accuracy > 0.4, f"held-out accuracy {accuracy:.3f}"


# The demo draws more people with one session each (fewer near-duplicate photos per person).
def test_a_tree_of_one_session_per_person(tmp_path: Path) -> None:
    names = synthetic_names(3, ["A"])
    assert len(names) == 3 * len(EXPRESSIONS) * len(ANGLES) and {n.session for n in names} == {"A"}
    root = generate(tmp_path, 3, sessions=["A"], workers=1)
    index = index_kdef(root)
    assert len(index.records) == len(names) and {r.name.session for r in index.records} == {"A"}
    assert len({r.subject for r in index.records}) == 3
    with pytest.raises(UserError, match="sessions must be some of A, B"):
        synthetic_names(3, ["C"])
