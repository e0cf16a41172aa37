"""Progress bars for long work (rich), on standard error so that standard output stays data.

A bar redraws in place on a terminal; when standard error is not a terminal (a log file, CI) rich
prints only its final state, one line per bar, so logs are not flooded. ``LANMSFF_QUIET=1`` or
:func:`set_quiet` (the ``--quiet`` option of the command lines) turns them off.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

T = TypeVar("T")
QUIET_ENV = "LANMSFF_QUIET"


def set_quiet(quiet: bool = True) -> None:
    """Turn progress bars off (or on again) for this process and the worker processes it starts."""
    if quiet:
        os.environ[QUIET_ENV] = "1"
    else:
        os.environ.pop(QUIET_ENV, None)


def is_quiet() -> bool:
    return os.environ.get(QUIET_ENV, "") not in ("", "0")


class _RateColumn(ProgressColumn):
    """Items per second of the task so far, e.g. ``8.3 frames/s``."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        return Text(
            f"{task.speed:.1f} {self.unit}/s" if task.speed else f"- {self.unit}/s", style="progress.data.speed"
        )


def track(
    items: Iterable[T], *, total: int | None = None, description: str = "Working", rate: str | None = None
) -> Iterator[T]:
    """Iterate over ``items`` while showing a rich progress bar (counts, elapsed and remaining time) on stderr.

    ``rate`` names the items to show their rate too (``rate="frames"``: ``8.3 frames/s``).
    """
    columns = [TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [_RateColumn(rate)] if rate else []
    progress = Progress(
        *columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=is_quiet(),
    )
    with progress:
        yield from progress.track(items, total=total, description=description)
