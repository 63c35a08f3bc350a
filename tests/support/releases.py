"""Real releases for the update tests: a copy of this source tree with another version (and,
for the bad one, a `kiosk run` that exits 1 at once), built and signed by `kiosk release build`,
and an update root whose `current` runs this source tree (the version "before")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from kiosk import __version__
from tests.support.paths import ROOT

CRASH_LINE = '    raise SystemExit("simulated: this version crashes at start")\n'


def source_copy(dest: Path, version: str, *, crash_at_start: bool = False) -> Path:
    """This source tree at `dest`, its version set to `version`."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("kiosk", "provisioning"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy(ROOT / name, dest / name)
    init = dest / "kiosk" / "__init__.py"
    init.write_text(
        init.read_text().replace(f'__version__ = "{__version__}"', f'__version__ = "{version}"')
    )
    if crash_at_start:
        run = dest / "kiosk" / "cli_run.py"
        text = run.read_text()
        head = "def cmd_run(args: argparse.Namespace) -> int:\n"
        assert head in text
        run.write_text(text.replace(head, head + CRASH_LINE, 1))
    return dest


def build_release(project: Path, out: Path, key: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "kiosk.cli", "release", "build", str(out)),
            *("--key", str(key), "--project", str(project), "--notes", "test"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=900,
    )


def source_version_root(root: Path, name: str = f"{__version__}-source") -> Path:
    """An update root whose `current` is this source tree run by this Python, as a cabinet
    provisioned by hand before its first update; returns `versions/<name>`."""
    venv = root / "versions" / name
    (venv / "bin").mkdir(parents=True)
    exe = venv / "bin" / "kiosk"
    exe.write_text(f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m kiosk.cli "$@"\n')
    exe.chmod(0o755)
    os.symlink(Path("versions") / name, root / "current")
    return venv


def small_release(
    tmp_path: Path, version: str = "9.9.9", schema: tuple[int, int] = (0, 5)
) -> tuple[Path, bytes, Path]:
    """A hand-made release (random "wheels" and a lock) at tmp_path/served/kiosk-<version>,
    signed by `write_manifest` (the code `kiosk release build` signs with), for tests of what
    happens before pip: transfer, signature, schema and disk checks. Returns (dir, public key,
    private key file)."""
    from kiosk.update.release import generate_release_key, load_release_public_key, write_manifest

    rel = tmp_path / "served" / f"kiosk-{version}"
    (rel / "wheels").mkdir(parents=True)
    (rel / "wheels" / f"kiosk-{version}-py3-none-any.whl").write_bytes(os.urandom(300_000))
    (rel / "wheels" / "dep-1.0-py3-none-any.whl").write_bytes(os.urandom(50_000))
    (rel / "wheels" / "requirements.lock").write_text("# test\n")
    key, pub = tmp_path / "release.pem", tmp_path / "release.pub"
    if not key.exists():
        generate_release_key(key, pub)
    write_manifest(rel, key, version=version, store_schema=schema, notes="small")
    return rel, load_release_public_key(pub), key
