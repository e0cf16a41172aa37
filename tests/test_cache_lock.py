"""The preprocessing cache's lock: jobs that start together on one cache folder build it once."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
from pathlib import Path
from typing import Any

from lanmsff.data.cache import building_lock, preprocess_records
from lanmsff.data.kdef import index_kdef


def _race(tree: str, cache: str, start: Any, results: Any) -> None:
    """One job: wait for the start, preprocess the tree into ``cache``; say whether it built the file."""
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("lanmsff").addHandler(handler)
    logging.getLogger("lanmsff").setLevel(logging.INFO)
    index = index_kdef(Path(tree))
    start.wait()
    faces = preprocess_records(index.root, index.records[:70], mode="box", cache_dir=cache, workers=1)
    built = any(m.startswith("Wrote preprocessed faces to cache") for m in messages)
    results.put((built, hashlib.sha256(faces.images.tobytes()).hexdigest(), len(faces.paths)))


def test_two_jobs_racing_for_the_cache_build_it_once(tiny_tree: Path, tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    jobs = [context.Process(target=_race, args=(str(tiny_tree), str(tmp_path), start, results)) for _ in range(2)]
    for job in jobs:
        job.start()
    outcomes = [results.get(timeout=300) for _ in jobs]
    for job in jobs:
        job.join(timeout=60)
        assert job.exitcode == 0
    assert sorted(built for built, _, _ in outcomes) == [False, True]  # one built, the other loaded its file
    assert outcomes[0][1:] == outcomes[1][1:] and outcomes[0][2] == 70
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".npz"] and not list(tmp_path.glob("*.lock"))


def test_the_lock_is_released_when_the_build_fails(tmp_path: Path) -> None:
    path = tmp_path / "kdef_x.npz"
    try:
        with building_lock(path):
            raise RuntimeError("the build failed")
    except RuntimeError:
        pass
    with building_lock(path):  # taken again at once, not after the lease
        assert (tmp_path / "kdef_x.npz.lock").exists()
    assert not (tmp_path / "kdef_x.npz.lock").exists()
