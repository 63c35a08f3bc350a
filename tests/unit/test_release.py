"""Releases (issue 16 req. 1): `kiosk release build` makes a directory with the kiosk wheel, a
hash-pinned wheelhouse of its dependencies and a manifest (version, files with SHA-256, store
schema range, notes) signed by a release key; `kiosk release verify` (and every install)
refuses a release whose signature, key, files or file list do not match.

The test builds one real release of this source tree (pip wheel + pip download, from the index
or pip's cache), verifies it, then alters copies of it one way each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.store.migrations import LATEST_VERSION
from kiosk.update.release import (
    ReleaseError,
    generate_release_key,
    load_release_public_key,
    verify_release,
)

ROOT = Path(__file__).resolve().parents[2]


def kiosk_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kiosk.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("release")
    keygen = kiosk_cli("release", "keygen", str(d / "release.pem"), str(d / "release.pub"))
    assert keygen.returncode == 0, keygen.stderr
    assert (d / "release.pem").stat().st_mode & 0o077 == 0  # the private key is 0600
    built = kiosk_cli(
        *("release", "build", str(d / "rel"), "--key", str(d / "release.pem")),
        *("--project", str(ROOT), "--notes", "test release"),
    )
    assert built.returncode == 0, built.stdout + built.stderr[-3000:]
    return d / "rel", d / "release.pub", d / "release.pem"


def test_a_built_release_verifies(release: tuple[Path, Path, Path]) -> None:
    rel_dir, pub, _ = release
    rel = verify_release(rel_dir, load_release_public_key(pub))
    from kiosk import __version__

    assert rel.version == __version__
    assert rel.store_schema_max == LATEST_VERSION
    assert rel.notes == "test release"
    names = {Path(p).name.split("-")[0].lower() for p, _, _ in rel.files}
    assert {"kiosk", "paho_mqtt", "cryptography", "pygame", "requirements.lock"} <= names
    manifest = json.loads((rel_dir / "manifest.json").read_text())
    assert all(len(f["sha256"]) == 64 for f in manifest["files"])
    ok = kiosk_cli("release", "verify", str(rel_dir), "--public-key", str(pub))
    assert ok.returncode == 0 and f"release {rel.version} OK" in ok.stdout, ok


def _copy(release: tuple[Path, Path, Path], tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(release[0], dest)
    return dest


def test_a_tampered_wheel_is_refused(release: tuple[Path, Path, Path], tmp_path: Path) -> None:
    bad = _copy(release, tmp_path)
    victim = next((bad / "wheels").glob("kiosk-*.whl"))
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(ReleaseError, match="SHA-256 or size does not match"):
        verify_release(bad, load_release_public_key(release[1]))
    refused = kiosk_cli("release", "verify", str(bad), "--public-key", str(release[1]))
    assert refused.returncode == 1 and "REFUSED" in refused.stderr and victim.name in refused.stderr


def test_an_altered_manifest_is_refused(release: tuple[Path, Path, Path], tmp_path: Path) -> None:
    bad = _copy(release, tmp_path)
    m = json.loads((bad / "manifest.json").read_text())
    m["store_schema"]["max"] = 999  # one field changed: the signature no longer matches
    (bad / "manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    with pytest.raises(ReleaseError, match="signature does not match"):
        verify_release(bad, load_release_public_key(release[1]))


def test_a_bad_signature_or_another_key_is_refused(
    release: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    bad = _copy(release, tmp_path)
    sig = json.loads((bad / "manifest.sig").read_text())
    sig["sig"] = sig["sig"][:-4] + ("AAAA" if not sig["sig"].endswith("AAAA") else "BBBB")
    (bad / "manifest.sig").write_text(json.dumps(sig))
    with pytest.raises(ReleaseError, match="signature does not match"):
        verify_release(bad, load_release_public_key(release[1]))
    # a release signed by another key (e.g. a province message key) is not trusted
    generate_release_key(tmp_path / "other.pem", tmp_path / "other.pub")
    with pytest.raises(ReleaseError, match="signed by release key"):
        verify_release(release[0], load_release_public_key(tmp_path / "other.pub"))


def test_an_unlisted_or_missing_file_is_refused(
    release: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    bad = _copy(release, tmp_path)
    (bad / "wheels" / "evil-1.0-py3-none-any.whl").write_bytes(b"x")
    with pytest.raises(ReleaseError, match="files not in the manifest"):
        verify_release(bad, load_release_public_key(release[1]))
    gone = _copy(release, tmp_path / "2")
    next((gone / "wheels").glob("pyserial-*.whl")).unlink()
    with pytest.raises(ReleaseError, match="missing"):
        verify_release(gone, load_release_public_key(release[1]))
    with pytest.raises(ReleaseError, match=r"not a release: manifest\.sig is missing"):
        (gone / "manifest.sig").unlink()
        verify_release(gone, load_release_public_key(release[1]))
