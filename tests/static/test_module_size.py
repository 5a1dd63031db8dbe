"""The engine's modules stay small enough to read in one sitting.

The engine was once a few 1,500-2,000-line modules whose size hid their design (issue 12). Each
module of ``layers/engine/sfsync`` now holds one concern; a module that grows past the limit is a
sign that a second concern moved in, and is split along that seam (docs/decisions.md, 2026-12-07
"Modules under 900 lines").
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.static

ENGINE = Path(__file__).resolve().parents[2] / "layers" / "engine" / "sfsync"
MAX_LINES = 900


def _line_counts() -> dict[str, int]:
    return {
        str(path.relative_to(ENGINE.parent)): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(ENGINE.rglob("*.py"))
    }


def test_given_the_engine_then_it_has_modules_to_measure() -> None:
    counts = _line_counts()
    assert len(counts) > 30, counts  # the layered packages: a wrong path would pass vacuously
    assert "sfsync/wiring.py" in counts


def test_given_the_engine_modules_then_none_is_longer_than_the_limit() -> None:
    too_long = {name: lines for name, lines in _line_counts().items() if lines > MAX_LINES}
    assert not too_long, f"split these along a real seam (at most {MAX_LINES} lines each): {too_long}"
