"""docs/security.md names an attack test for every control: each named test file and test
function must exist, so the page cannot point at a test that was renamed or removed."""

from __future__ import annotations

import re

from tests.support.paths import ROOT

DOC = ROOT / "docs" / "security.md"
# `tests/x/test_y.py`, `test_y.py` (= tests/integration/), optionally `::test_name`
_REF = re.compile(r"(?<![\w/])((?:tests/[\w/]+/)?test_\w+\.py)(?:::(test_\w+))?")


def _refs() -> list[tuple[str, str | None]]:
    return [(m.group(1), m.group(2)) for m in _REF.finditer(DOC.read_text(encoding="utf-8"))]


def test_the_page_names_attack_tests() -> None:
    assert len(_refs()) >= 25


def test_every_named_test_exists() -> None:
    missing = []
    for path, name in _refs():
        file = ROOT / (path if path.startswith("tests/") else f"tests/integration/{path}")
        if not file.is_file():
            missing.append(path)
        elif name is not None and f"def {name}(" not in file.read_text(encoding="utf-8"):
            missing.append(f"{path}::{name}")
    assert missing == [], f"docs/security.md names tests that do not exist: {missing}"
