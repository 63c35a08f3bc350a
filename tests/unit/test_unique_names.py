"""One class name, one meaning (issue 12, requirement 8): no two top-level classes in production
code (`kiosk/` minus `kiosk/sim/`, plus `provisioning/`) share a name. Private classes (`_Name`)
are their module's own business and not counted.

Run `python tests/unit/test_unique_names.py` to print every duplicated name and where.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from tests.support.paths import ROOT
from tests.support.production import production_files

# Names allowed to be defined more than once. Empty since issue 12 requirement 8: keep it empty
# (rename the newcomer instead); the mechanism stays so a check never has to be rewritten.
KNOWN_DUPLICATES: frozenset[str] = frozenset()


def top_level_classes(root: Path = ROOT) -> dict[str, list[str]]:
    """Class name -> the production modules (relative paths) that define it at top level."""
    where: dict[str, list[str]] = defaultdict(list)
    for path in production_files(root):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where[node.name].append(path.relative_to(root).as_posix())
    return dict(where)


def duplicates(root: Path = ROOT) -> dict[str, list[str]]:
    return {name: paths for name, paths in top_level_classes(root).items() if len(paths) > 1}


def test_every_production_class_name_means_one_thing() -> None:
    found = {n: p for n, p in duplicates().items() if n not in KNOWN_DUPLICATES}
    assert not found, "class names defined more than once (rename one):\n" + "\n".join(
        f"  {name}: {', '.join(paths)}" for name, paths in sorted(found.items())
    )


def test_the_allow_list_names_only_real_duplicates() -> None:
    """A duplicate that was renamed must leave the allow-list, so the list only shrinks."""
    stale = sorted(KNOWN_DUPLICATES - set(duplicates()))
    assert not stale, f"no longer duplicated, remove from KNOWN_DUPLICATES: {stale}"


def test_the_checker_finds_duplicates(tmp_path: Path) -> None:
    (tmp_path / "kiosk" / "sim").mkdir(parents=True)
    (tmp_path / "provisioning").mkdir()
    (tmp_path / "kiosk" / "a.py").write_text("class Thing:\n    class Inner: ...\n")
    (tmp_path / "provisioning" / "b.py").write_text("class Thing: ...\nclass Inner: ...\n")
    (tmp_path / "kiosk" / "sim" / "c.py").write_text("class Thing: ...\n")
    assert duplicates(tmp_path) == {"Thing": ["kiosk/a.py", "provisioning/b.py"]}


if __name__ == "__main__":
    for name, paths in sorted(duplicates().items()):
        known = "  (known: KNOWN_DUPLICATES)" if name in KNOWN_DUPLICATES else ""
        print(f"{name}: {', '.join(paths)}{known}")
