"""Fetch a release over HTTPS into a local directory: signature first, then each file with
resume, size and hash checks, inside a disk budget.

Owns: the download. `BASE/manifest.json` and `BASE/manifest.sig` come first and the signature
is checked with the pinned release key before any wheel is fetched; a release that does not
fit (its files plus `min_free_mb`) is refused before the first byte of it is written. Each file
goes to `<name>.part`, resumed with an HTTP Range request after a cut (a server that ignores
the range starts it again), never beyond its listed size, and renamed only once its SHA-256
matches. A file already complete is not fetched again. The directory is then checked like any
release (kiosk/update/release.py `verify_release`). Plain http:// only to a loopback host.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiosk.update.release import (
    MANIFEST,
    MAX_MANIFEST_BYTES,
    SIGNATURE,
    Release,
    ReleaseError,
    read_signed,
    verify_release,
)
from kiosk.update.wheelhouse import sha256

__all__ = ["download_release"]

CHUNK = 1 << 16


def _context(url: str, ca_file: Path | None) -> ssl.SSLContext | None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme == "http" and loopback:
        return None
    raise ReleaseError(f"{url}: a release is fetched over https:// (http:// only on loopback)")


def _get_small(url: str, ctx: ssl.SSLContext | None, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as r:
            data: bytes = r.read(MAX_MANIFEST_BYTES + 1)
    except (urllib.error.URLError, OSError) as e:
        raise ReleaseError(f"{url}: cannot fetch: {e}") from e
    if len(data) > MAX_MANIFEST_BYTES:
        raise ReleaseError(f"{url}: larger than {MAX_MANIFEST_BYTES} bytes")
    return data


def _fetch_file(
    url: str, dest: Path, size: int, digest: str, ctx: ssl.SSLContext | None, timeout: float
) -> int:
    """One file into `dest` (resumed from dest.part); the bytes fetched now."""
    if dest.is_file() and dest.stat().st_size == size and sha256(dest) == digest:
        return 0
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    fetched = 0
    if have < size:
        req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
                if have and r.status != 206:  # the server sent it whole: start again
                    have = 0
                with part.open("ab" if have else "wb") as f:
                    while chunk := r.read(CHUNK):
                        if have + fetched + len(chunk) > size:
                            raise ReleaseError(f"{url}: longer than the {size} bytes listed")
                        f.write(chunk)
                        fetched += len(chunk)
        except (urllib.error.URLError, OSError) as e:
            raise ReleaseError(
                f"{url}: cut after {have + fetched} of {size} bytes ({e}); run it again to resume"
            ) from e
        if have + fetched < size:  # the connection ended early (a short body)
            raise ReleaseError(
                f"{url}: cut after {have + fetched} of {size} bytes; run it again to resume"
            )
    h = hashlib.sha256()
    with part.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if part.stat().st_size != size or h.hexdigest() != digest:
        part.unlink()
        raise ReleaseError(f"{url}: SHA-256 does not match the signed manifest (discarded)")
    part.replace(dest)
    return fetched


def download_release(
    base_url: str,
    dest: Path,
    public_key: bytes,
    *,
    ca_file: Path | None = None,
    min_free_mb: int = 200,
    timeout: float = 30.0,
    say: Callable[[str], Any] = print,
) -> Release:
    """Fetch the release at `base_url` (a directory URL) into `dest`; returns it, verified."""
    base = base_url.rstrip("/") + "/"
    ctx = _context(base, ca_file)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MANIFEST).write_bytes(_get_small(base + MANIFEST, ctx, timeout))
    (dest / SIGNATURE).write_bytes(_get_small(base + SIGNATURE, ctx, timeout))
    manifest = read_signed(dest, public_key)  # before any wheel: a forged list costs nothing
    files = [(str(f["path"]), str(f["sha256"]), int(f["size"])) for f in manifest["files"]]
    missing = 0
    for rel, _, size in files:
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ReleaseError(f"{base + MANIFEST}: file path {rel!r} leaves the release")
        done = dest / rel
        part = done.with_name(done.name + ".part")
        have = done.stat().st_size if done.exists() else part.stat().st_size if part.exists() else 0
        missing += max(0, size - have)
    free = shutil.disk_usage(dest).free
    if free - missing < min_free_mb * 1_000_000:
        raise ReleaseError(
            f"release {manifest.get('version')} does not fit: {missing // 1_000_000} MB to "
            f"fetch, {free // 1_000_000} MB free, {min_free_mb} MB must stay free"
        )
    fetched = 0
    for rel, digest, size in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fetched += _fetch_file(base + rel, target, size, digest, ctx, timeout)
    say(f"release {manifest.get('version')}: {fetched} bytes fetched into {dest}")
    return verify_release(dest, public_key)
