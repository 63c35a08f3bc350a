"""Production code, as the code-shape tests (size limits, unique class names) see it: `kiosk/`
minus `kiosk/sim/`, plus `provisioning/`."""

from __future__ import annotations

from pathlib import Path

from tests.support.paths import ROOT

PRODUCTION = ("kiosk", "provisioning")
NOT_PRODUCTION = (Path("kiosk") / "sim",)


def production_files(root: Path = ROOT) -> list[Path]:
    """Every production .py file under `root` (a repository, or a test's copy of its layout)."""
    files: list[Path] = []
    for package in PRODUCTION:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root)
            if any(rel.is_relative_to(skip) for skip in NOT_PRODUCTION):
                continue
            files.append(path)
    return files
