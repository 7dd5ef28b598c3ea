"""The engine's citations resolve inside the repository: every "§n" names a section of
docs/sts-protocol.md, and nothing points at material outside a clone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "docs" / "sts-protocol.md"
ENGINE = sorted((ROOT / "tokens" / "sts").glob("*.py"))
CITING = [*ENGINE, ROOT / "docs" / "sts.md", *sorted(Path(__file__).parent.glob("*.py"))]
# a section sign right after "IEC " cites the standard's own clause numbers, not the notes
CITATION = re.compile(r"(?<!IEC )(?<!IEC-tr )§(\d+(?:\.\d+)*)")


def protocol_sections() -> set[str]:
    headings = re.findall(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", PROTOCOL.read_text(), flags=re.MULTILINE)
    return set(headings)


def test_the_protocol_notes_have_numbered_sections() -> None:
    sections = protocol_sections()
    assert {str(n) for n in range(1, 13)} <= sections
    assert {"4.4.3", "5.6", "6.2", "4.5"} <= sections  # the issue 13 additions


@pytest.mark.parametrize("path", CITING, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_citation_names_a_section_of_the_protocol_notes(path: Path) -> None:
    text = path.read_text()
    cited = set(CITATION.findall(text))
    missing = cited - protocol_sections()
    assert not missing, f"{path.name} cites sections docs/sts-protocol.md does not have: {sorted(missing)}"


@pytest.mark.parametrize("path", CITING, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_cites_material_outside_the_repository(path: Path) -> None:
    if path == Path(__file__):
        return
    text = path.read_text()
    assert "reference.md" not in text
    assert "shared/sts" not in text


def test_the_engine_modules_cite_the_protocol_notes_by_name() -> None:
    # a reader who opens one module must learn where "§n" points
    for path in ENGINE:
        text = path.read_text()
        if CITATION.search(text):
            assert "docs/sts-protocol.md" in text, path.name
