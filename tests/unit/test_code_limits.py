"""Size limits on production code (issue 12, requirement 9), measured with `ast`.

Production code is `kiosk/` minus `kiosk/sim/`, plus `provisioning/`. No class may span more
than MAX_CLASS_LINES lines and no function (method, nested function) more than
MAX_FUNCTION_LINES, counted from its first decorator to its last line. The one exemption is a
data table (a transition table, a message catalog): a class or function whose definition has,
on the line right above it (above its first decorator), a comment containing `data table:` and
saying why, e.g.

    # data table: the sale machine's transitions, one row per (state, event)
    TRANSITIONS = ...

Run `python tests/unit/test_code_limits.py` to print every offender with its size.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import ROOT
from tests.support.production import production_files

MAX_CLASS_LINES = 500
MAX_FUNCTION_LINES = 80
EXEMPT_MARK = "data table:"

# Known offenders, allowed whole: none since issue 12 (the controller split into
# kiosk/controller/ and kiosk/core/session.py; kiosk/app.py became wiring only). Keep it empty.
KNOWN_OFFENDING_FILES: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Offender:
    path: str  # relative to the repository, with "/"
    name: str  # qualified: Class.method, function.<locals>.inner
    kind: str  # "class" or "function"
    lines: int
    limit: int

    @property
    def key(self) -> str:
        return f"{self.path}::{self.name}"

    def __str__(self) -> str:
        return f"{self.key}: {self.kind} of {self.lines} lines (limit {self.limit})"


def _span(node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, int]:
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    assert node.end_lineno is not None
    return first, node.end_lineno


def _is_data_table(lines: list[str], first: int) -> bool:
    """The line right above `first` (1-based) is a comment that says `data table:`."""
    if first < 2:
        return False
    above = lines[first - 2].strip()
    return above.startswith("#") and EXEMPT_MARK in above


def _walk(
    node: ast.AST, prefix: str
) -> Iterator[tuple[str, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{child.name}"
            yield name, child
            inner = name + ("." if isinstance(child, ast.ClassDef) else ".<locals>.")
            yield from _walk(child, inner)
        else:
            yield from _walk(child, prefix)


def measure(path: Path, root: Path = ROOT) -> Iterator[Offender]:
    """Every class and function in `path` over its limit and not marked as a data table."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    rel = path.relative_to(root).as_posix()
    for name, node in _walk(ast.parse(source, filename=str(path)), ""):
        first, last = _span(node)
        size = last - first + 1
        is_class = isinstance(node, ast.ClassDef)
        limit = MAX_CLASS_LINES if is_class else MAX_FUNCTION_LINES
        if size > limit and not _is_data_table(lines, first):
            yield Offender(rel, name, "class" if is_class else "function", size, limit)


def offenders(root: Path = ROOT) -> list[Offender]:
    return [o for path in production_files(root) for o in measure(path, root)]


def test_no_production_class_or_function_over_its_limit() -> None:
    found = [o for o in offenders() if o.path not in KNOWN_OFFENDING_FILES]
    assert not found, "over the size limits (split them, see this module's doc):\n" + "\n".join(
        f"  {o}" for o in sorted(found, key=lambda o: -o.lines)
    )


def test_the_allow_list_names_only_real_offenders() -> None:
    """A known offender that was split must leave the allow-list, so the list only shrinks."""
    current = {o.path for o in offenders()}
    stale = sorted(KNOWN_OFFENDING_FILES - current)
    assert not stale, f"no longer over the limits, remove from KNOWN_OFFENDING_FILES: {stale}"


def test_the_checker_finds_offenders_and_honours_the_data_table_mark(tmp_path: Path) -> None:
    pkg = tmp_path / "kiosk"
    (pkg / "sim").mkdir(parents=True)
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (pkg / "big.py").write_text(
        f"def too_long():\n{body}\n\n"
        f"# data table: a message catalog, one line per message\n"
        f"def table():\n{body}\n\n"
        f"def short():\n    return 1\n",
        encoding="utf-8",
    )
    (pkg / "sim" / "ignored.py").write_text(f"def too_long():\n{body}\n", encoding="utf-8")
    methods = "\n".join(f"    def m{i}(self):\n        return {i}\n" for i in range(200))
    (pkg / "cls.py").write_text(f"class Big:\n{methods}", encoding="utf-8")
    found = {o.key: o.lines for o in offenders(tmp_path)}
    assert found == {
        "kiosk/big.py::too_long": MAX_FUNCTION_LINES + 1,
        "kiosk/cls.py::Big": 600,
    }


if __name__ == "__main__":
    for offender in sorted(offenders(), key=lambda o: -o.lines):
        known = (
            "  (allowed: KNOWN_OFFENDING_FILES)" if offender.path in KNOWN_OFFENDING_FILES else ""
        )
        print(f"{offender}{known}")
