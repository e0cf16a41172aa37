"""Code says what it does, not when or where something was measured: numbers live in results files."""

from __future__ import annotations

import re

from .conftest import ROOT

ISO_DATE = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")
ANECDOTES = re.compile(r"\b(Intel kind|AMD kind|Zen|[Mm]easured on)\b")


def test_no_dated_measurement_or_machine_anecdote_in_the_package() -> None:
    found = []
    for path in sorted((ROOT / "src" / "lanmsff").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            hits = ISO_DATE.findall(line) + ANECDOTES.findall(line)
            if hits:
                found.append(f"{path.relative_to(ROOT)}:{number}: {', '.join(hits)}")
    assert not found, "\n".join(found)
