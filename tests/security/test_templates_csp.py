"""Every template is CSP-clean: script-src 'self' refuses inline scripts and inline event handlers, so
a template that uses one is broken in the browser (the 403 page's "Go back" once was)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INLINE_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.I)
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)


def _templates() -> list[Path]:
    return [p for p in ROOT.glob("**/templates/**/*.html") if ".venv" not in p.parts and "var" not in p.parts]


def test_no_template_has_an_inline_script_or_event_handler() -> None:
    found = _templates()
    assert len(found) > 10
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0)[:60]}"
        for path in found
        for pattern in (INLINE_HANDLER, INLINE_SCRIPT)
        for match in pattern.finditer(path.read_text())
    ]
    assert offenders == []
