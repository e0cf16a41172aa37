"""The README and the documentation site: the site builds strictly, the README stays short, undated and
linked, and the architecture page lists the same layers as ``tests/test_layering.py``.

``make docs`` builds the site (MkDocs, Material theme) with ``--strict``; ``mkdocs.yml`` turns dead links,
missing anchors, missing nav pages and pages left out of the nav into warnings, so each one fails it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT
from .test_layering import LAYERS

README = ROOT / "README.md"
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"
ARCHITECTURE = DOCS / "architecture.md"
GENERATED = {"speed-results.md"}  # written from benchmarks/results/ by another tool: dated on purpose

README_MAX_LINES = 300
ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
MACHINE_PHRASES = ("measured on", "Intel kind", "AMD kind", "Zen")  # per-machine prose belongs in results files
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _mkdocs_available() -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[dev]' installs it)")
    pytest.importorskip("material", reason="mkdocs-material is not installed (pip install -e '.[dev]' installs it)")


def build_site(config: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of ``config`` into ``site_dir`` (nothing is fetched from the network)."""
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config)]
    return subprocess.run(
        [*command, "--site-dir", str(site_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


def _copy_site_sources(tmp_path: Path) -> Path:
    """A copy of mkdocs.yml and docs/ under ``tmp_path``; returns the copied mkdocs.yml."""
    shutil.copy2(MKDOCS_YML, tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    return tmp_path / "mkdocs.yml"


# ----------------------------------------------------------------------------- the site
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    _mkdocs_available()
    done = build_site(MKDOCS_YML, tmp_path / "site")
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "architecture" / "index.html").is_file()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("dead link", "nowhere.md"),
        ("dead anchor", "#no-such-section"),
        ("missing nav page", "speed.md"),
        ("page left out of the nav", "orphan.md"),
    ],
)
def test_a_broken_site_fails_the_strict_build(tmp_path: Path, damage: str, expected: str) -> None:
    _mkdocs_available()
    config = _copy_site_sources(tmp_path)
    docs = tmp_path / "docs"
    if damage == "dead link":
        (docs / "index.md").write_text((docs / "index.md").read_text() + "\n[gone](nowhere.md)\n")
    elif damage == "dead anchor":
        (docs / "index.md").write_text((docs / "index.md").read_text() + "\n[gone](data.md#no-such-section)\n")
    elif damage == "missing nav page":
        (docs / "speed.md").unlink()
        for page in docs.glob("*.md"):  # links to it would fail too; the nav entry alone must
            page.write_text(re.sub(r"\]\(speed\.md(#[^)]*)?\)", "](index.md)", page.read_text()))
    else:
        (docs / "orphan.md").write_text("# Not in the nav\n")
    done = build_site(config, tmp_path / "site")
    assert done.returncode != 0, f"a {damage} did not fail mkdocs build --strict"
    assert expected in done.stdout + done.stderr


def test_every_docs_page_is_in_the_nav() -> None:
    nav = MKDOCS_YML.read_text(encoding="utf-8")
    pages = sorted(path.name for path in DOCS.glob("*.md"))
    missing = [page for page in pages if not re.search(rf":\s*{re.escape(page)}\s*$", nav, re.MULTILINE)]
    assert not missing, f"docs pages missing from the nav of mkdocs.yml: {missing}"


# ----------------------------------------------------------------------------- the README
def test_the_readme_is_short_and_keeps_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; at most {README_MAX_LINES} (move detail to docs/)"
    assert "make train" in text and "make test" in text


def test_every_relative_link_of_the_readme_exists() -> None:
    missing = []
    for target in LINK.findall(README.read_text(encoding="utf-8")):
        if "://" in target or target.startswith(("#", "mailto:")):
            continue
        path = target.split("#", 1)[0]
        if path and not (ROOT / path).exists():
            missing.append(target)
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_the_readme_has_no_dates_and_no_machine_anecdotes() -> None:
    text = README.read_text(encoding="utf-8")
    assert not ISO_DATE.findall(text), f"README.md holds dates: {ISO_DATE.findall(text)}"
    # phrases case-insensitively; "Zen" as written (a lower-case "zen" may be part of a word)
    found = [p for p in MACHINE_PHRASES if (p.lower() in text.lower() if " " in p else p in text)]
    assert not found, f"README.md holds per-machine prose: {found} (measurements go to benchmarks/results/)"


# a section that make speed-tables writes into a hand-written page (its measurements carry their date)
GENERATED_SECTION = re.compile(r"<!-- ([\w-]+): generated by make speed-tables -->.*?<!-- /\1 -->", re.DOTALL)


def hand_written(page: Path) -> str:
    """A page's text without the sections that make speed-tables writes."""
    return GENERATED_SECTION.sub("", page.read_text(encoding="utf-8"))


def test_the_docs_pages_are_undated() -> None:
    dated = {
        page.name: ISO_DATE.findall(hand_written(page))
        for page in DOCS.glob("*.md")
        if page.name not in GENERATED and ISO_DATE.search(hand_written(page))
    }
    assert not dated, f"dates in hand-written docs pages (dated measurements go to benchmarks/results/): {dated}"


# ----------------------------------------------------------------------------- the layers
def layer_table(text: str) -> list[tuple[int, set[str], str]]:
    """``(layer, packages, may-import cell)`` of each row between the ``layers:start``/``layers:end`` markers."""
    section = re.search(r"<!-- layers:start -->(.*?)<!-- layers:end -->", text, re.DOTALL)
    assert section, "docs/architecture.md lost its <!-- layers:start --> ... <!-- layers:end --> markers"
    rows = []
    for line in section.group(1).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells and cells[0].isdigit():
            rows.append((int(cells[0]), set(re.findall(r"`(lanmsff[\w.]*)`", cells[1])), cells[-1]))
    return rows


def layer_diagram(text: str) -> list[tuple[int, set[str]]]:
    """``(layer, packages)`` of each node ``L<n>["<n>: a, b"]`` of the mermaid diagram."""
    nodes = re.findall(r'L(\d+)\["(\d+): ([^"]*)"\]', text)
    return [(int(level), {name.strip() for name in names.replace("<br>", " ").split(",")}) for level, _, names in nodes]


def expected_layers() -> list[tuple[int, set[str]]]:
    return [(level, set(names)) for level, names in enumerate(LAYERS)]


def test_the_architecture_page_lists_the_layers_of_the_layering_test() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    table = layer_table(text)
    assert [(level, names) for level, names, _ in table] == expected_layers(), (
        "the layer table of docs/architecture.md differs from LAYERS in tests/test_layering.py:\n"
        f"page:   {[(level, sorted(names)) for level, names, _ in table]}\n"
        f"LAYERS: {[(level, sorted(names)) for level, names in expected_layers()]}"
    )
    for level, _, may_import in table:
        assert may_import == ("0" if level == 0 else f"0–{level}"), f"layer {level} may import: {may_import!r}"


def test_the_architecture_diagram_draws_the_same_layers() -> None:
    diagram = sorted(layer_diagram(ARCHITECTURE.read_text(encoding="utf-8")), key=lambda row: row[0])
    assert diagram == expected_layers(), (
        "the mermaid diagram of docs/architecture.md differs from LAYERS in tests/test_layering.py:\n"
        f"diagram: {[(level, sorted(names)) for level, names in diagram]}"
    )
