"""Releases: a directory a cabinet can install with no index and no trust in the medium.

Owns: the release layout, its manifest, the release key and the manifest's signature.

    RELEASE/
      manifest.json   {"format", "version", "created_at", "python", "platforms",
                       "store_schema": {"min", "max"}, "notes", "key_id",
                       "files": [{"path", "sha256", "size"}, ...]}
      manifest.sig    {"alg": "ed25519", "key_id", "sig"}: base64url Ed25519 over
                      SIG_DOMAIN + the exact bytes of manifest.json
      wheels/         the kiosk wheel, every pinned dependency, requirements.lock (hashes)

The release key is not the province's message key (kiosk.sync.signing): it signs releases only,
lives offline with the release manager, and its public half is pinned in each cabinet's config
at provisioning (`update.release_public_key`). `verify_release` refuses a release whose
signature, key, file hashes or file list do not match, naming what is wrong; the wheels are
then installed with `pip --require-hashes`, so pip checks every hash a second time.
Never installs anything (kiosk/update/installer.py does).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from kiosk.update.wheelhouse import LOCK_NAME, build_wheelhouse, sha256

__all__ = [
    "FORMAT",
    "MANIFEST",
    "SIGNATURE",
    "SIG_DOMAIN",
    "Release",
    "ReleaseError",
    "build_release",
    "generate_release_key",
    "load_release_public_key",
    "read_signed",
    "release_key_id",
    "verify_release",
    "write_manifest",
]

FORMAT = "kiosk-release/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
WHEELS = "wheels"
SIG_DOMAIN = b"kiosk-release-manifest/1\n"
MAX_MANIFEST_BYTES = 1 << 20


class ReleaseError(Exception):
    """A release that cannot be built or must not be installed; the message says why (in
    English, for logs). `key` and `fields`: the same in the user's words for the command line
    (a kiosk.textfile message key; "" when there is none)."""

    def __init__(self, message: str, key: str = "", **fields: object) -> None:
        super().__init__(message)
        self.key = key
        self.fields = fields


@dataclass(frozen=True)
class Release:
    """A verified release directory."""

    path: Path
    version: str
    store_schema_min: int
    store_schema_max: int
    notes: str
    key_id: str
    files: tuple[tuple[str, str, int], ...]  # (relative path, sha256, size)

    @property
    def wheels(self) -> Path:
        return self.path / WHEELS

    @property
    def lock(self) -> Path:
        return self.path / WHEELS / LOCK_NAME

    @property
    def size(self) -> int:
        return sum(size for _, _, size in self.files)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def release_key_id(public: bytes) -> str:
    """The first 16 hex digits of the SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(public).hexdigest()[:16]


def generate_release_key(private_out: Path, public_out: Path) -> str:
    """A new release key: the private PEM (0600, refused if it exists) and the public PEM."""
    priv = Ed25519PrivateKey.generate()
    pem = priv.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub = priv.public_key()
    public_out.write_bytes(
        pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return release_key_id(pub.public_bytes_raw())


def _load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ReleaseError(f"{path}: cannot read the release key: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError(f"{path}: not an Ed25519 private key")
    return key


def load_release_public_key(path: Path) -> bytes:
    """The raw 32 bytes of a PEM Ed25519 public key (the cabinet's pinned release key)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ReleaseError(
            f"{path}: cannot read the release public key: {e}",
            "release_key_unreadable",
            file=path,
            reason=e,
        ) from e
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as e:
        raise ReleaseError(
            f"{path}: not a PEM public key (cannot read the release public key)",
            "release_key_bad",
            file=path,
        ) from e
    if not isinstance(key, Ed25519PublicKey):
        raise ReleaseError(f"{path}: not an Ed25519 public key", "release_key_bad", file=path)
    return key.public_bytes_raw()


def _store_schema_of(project: Path) -> int:
    """The newest store schema the project's own code migrates to (its source, not ours)."""
    code = "from kiosk.store.migrations import LATEST_VERSION as v; print(v)"
    env = {**os.environ, "PYTHONPATH": str(project)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise ReleaseError(f"{project}: cannot read its store schema: {done.stderr[-500:]}")
    return int(done.stdout.strip())


def build_release(
    out: Path,
    *,
    key: Path,
    project: Path,
    constraints: Path | None = None,
    notes: str = "",
    platforms: Sequence[str] = (),
    python_version: str | None = None,
    find_links: Sequence[Path] = (),
    no_index: bool = False,
    store_schema_min: int = 0,
) -> Release:
    """Build and sign a release of the kiosk source tree `project` into `out` (must be new)."""
    _load_private(key)  # before the slow part: a wrong key fails at once
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        raise ReleaseError(f"{out}: exists and is not empty; a release directory is built once")
    wheels = build_wheelhouse(
        out / WHEELS,
        constraints=constraints or project / "constraints.txt",
        project=project,
        platforms=platforms,
        python_version=python_version,
        find_links=find_links,
        no_index=no_index,
    )
    versions = [v for (name, v) in wheels if name == "kiosk"]
    if len(versions) != 1:
        raise ReleaseError(f"expected one kiosk wheel in {out / WHEELS}, found {versions}")
    return write_manifest(
        out,
        key,
        version=versions[0],
        store_schema=(store_schema_min, _store_schema_of(project)),
        notes=notes,
        python=python_version or f"{sys.version_info.major}.{sys.version_info.minor}",
        platforms=list(platforms) or [sysconfig.get_platform().replace("-", "_")],
    )


def write_manifest(
    out: Path,
    key: Path,
    *,
    version: str,
    store_schema: tuple[int, int],
    notes: str = "",
    python: str = "",
    platforms: Sequence[str] = (),
) -> Release:
    """List and hash every file under `out`/wheels, write manifest.json and sign it with the
    release key at `key` (manifest.sig); returns the release, verified."""
    private = _load_private(key)
    pub = private.public_key().public_bytes_raw()
    files = []
    for p in sorted((out / WHEELS).iterdir()):
        files.append({"path": f"{WHEELS}/{p.name}", "sha256": sha256(p), "size": p.stat().st_size})
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": version,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": python,
        "platforms": list(platforms),
        "store_schema": {"min": store_schema[0], "max": store_schema[1]},
        "notes": notes,
        "key_id": release_key_id(pub),
        "files": files,
    }
    raw = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    signature = _b64(private.sign(SIG_DOMAIN + raw))
    sig = {"alg": "ed25519", "key_id": release_key_id(pub), "sig": signature}
    (out / MANIFEST).write_bytes(raw)
    (out / SIGNATURE).write_text(json.dumps(sig) + "\n", encoding="utf-8")
    return verify_release(out, pub)


def read_signed(path: Path, public: bytes) -> dict[str, Any]:
    try:
        raw = (path / MANIFEST).read_bytes()
        sig = json.loads((path / SIGNATURE).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        missing = Path(str(e.filename)).name
        raise ReleaseError(
            f"{path}: not a release: {missing} is missing",
            "release_missing",
            dir=path,
            name=missing,
        ) from e
    except (OSError, ValueError) as e:
        raise ReleaseError(
            f"{path}: unreadable manifest or signature: {e}", "release_unreadable", dir=path
        ) from e
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ReleaseError(f"{path / MANIFEST}: larger than {MAX_MANIFEST_BYTES} bytes")
    want = release_key_id(public)
    if not isinstance(sig, dict) or sig.get("alg") != "ed25519":
        raise ReleaseError(
            f"{path / SIGNATURE}: not an ed25519 signature", "release_unreadable", dir=path
        )
    if sig.get("key_id") != want:
        raise ReleaseError(
            f"{path / SIGNATURE}: signed by release key {sig.get('key_id')!r}, this cabinet "
            f"trusts {want!r} (update.release_public_key)",
            "release_other_key",
            dir=path,
            signed=sig.get("key_id"),
            trusted=want,
        )
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(
            _unb64(str(sig.get("sig", ""))), SIG_DOMAIN + raw
        )
    except (InvalidSignature, ValueError) as e:
        raise ReleaseError(
            f"{path / MANIFEST}: the signature does not match (altered manifest or wrong key)",
            "release_bad_signature",
            file=path / MANIFEST,
        ) from e
    manifest = json.loads(raw)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ReleaseError(f"{path / MANIFEST}: not a {FORMAT} manifest")
    return manifest


def verify_release(path: Path, public: bytes) -> Release:
    """Check the signature with the pinned key, then every file's size and SHA-256, and that
    the directory holds no file the manifest does not list. Raises ReleaseError."""
    path = path.resolve()
    m = read_signed(path, public)
    files: list[tuple[str, str, int]] = []
    for entry in m.get("files", []):
        rel, digest, size = str(entry["path"]), str(entry["sha256"]), int(entry["size"])
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts or len(parts) != 2 or parts[0] != WHEELS:
            raise ReleaseError(f"{path / MANIFEST}: file path {rel!r} is not under {WHEELS}/")
        f = path / rel
        if not f.is_file():
            raise ReleaseError(
                f"{f}: listed in the manifest but missing", "release_file_missing", file=f
            )
        if f.stat().st_size != size or sha256(f) != digest:
            raise ReleaseError(
                f"{f}: SHA-256 or size does not match the manifest (altered)",
                "release_file_altered",
                file=f,
            )
        files.append((rel, digest, size))
    listed = {rel for rel, _, _ in files}
    extra = sorted(
        str(p.relative_to(path))
        for p in path.rglob("*")
        if p.is_file()
        and p.name not in (MANIFEST, SIGNATURE)
        and str(p.relative_to(path)) not in listed
    )
    if extra:
        raise ReleaseError(
            f"{path}: files not in the manifest: {', '.join(extra)}",
            "release_extra_files",
            dir=path,
            files=", ".join(extra),
        )
    if f"{WHEELS}/{LOCK_NAME}" not in listed:
        raise ReleaseError(f"{path}: the manifest lists no {WHEELS}/{LOCK_NAME}")
    schema = m.get("store_schema", {})
    return Release(
        path=path,
        version=str(m["version"]),
        store_schema_min=int(schema.get("min", 0)),
        store_schema_max=int(schema["max"]),
        notes=str(m.get("notes", "")),
        key_id=str(m["key_id"]),
        files=tuple(files),
    )
