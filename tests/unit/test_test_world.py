"""The test world stays one: tests import shared helpers from tests/support only (never another
test module or a conftest), nothing edits sys.path, and the benchmarks do not import tests/."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import ROOT


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def _edits_sys_path(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "path"
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "sys"
            and node.attr in ("insert", "append", "extend")
        ):
            return True
    return False


def test_tests_import_only_tests_support() -> None:
    tests = ROOT / "tests"
    # helper modules outside tests/support that a test could reach through sys.path
    local = {p.stem for p in tests.rglob("*.py") if "support" not in p.parts} | {"conftest"}
    bad = []
    for path in sorted(tests.rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            other_test = name.startswith("tests.") and not name.startswith("tests.support")
            if other_test or top in local:
                bad.append(f"{path.relative_to(ROOT)}: {name}")
        if _edits_sys_path(path):
            bad.append(f"{path.relative_to(ROOT)}: edits sys.path")
    assert not bad, "\n".join(bad)


def test_benchmarks_do_not_import_tests() -> None:
    test_modules = {p.stem for p in (ROOT / "tests").rglob("*.py")} - {"kiosk", "provisioning"}
    bad = []
    for path in sorted((ROOT / "bench").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for name in _imports(path):
            if name.split(".")[0] in {"tests", *test_modules}:
                bad.append(f"{path.relative_to(ROOT)}: imports {name}")
        if any(isinstance(n, ast.Constant) and n.value == "tests" for n in ast.walk(tree)):
            bad.append(f"{path.relative_to(ROOT)}: a path into tests/")
    assert not bad, "\n".join(bad)
