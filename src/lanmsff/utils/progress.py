"""Progress bars for long work (rich), quiet when output is not a terminal or LANMSFF_QUIET is set."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")


def track(items: Iterable[T], *, total: int | None = None, description: str = "Working") -> Iterator[T]:
    """Iterate over ``items`` while showing a rich progress bar with counts and time left."""
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=bool(os.environ.get("LANMSFF_QUIET")),
    )
    with progress:
        yield from progress.track(items, total=total, description=description)
