"""Release downloads over HTTPS (issue 16 req. 3): signature checked before any wheel, resume
after a cut with a Range request, a file whose hash does not match discarded, a release that
does not fit refused before its first byte, and no plain http:// beyond loopback.

The releases here are small hand-made ones (a few random "wheels" and a lock, signed by
`write_manifest`, the same code `kiosk release build` signs with): what is tested is the
transfer. tests/unit/test_release.py builds a real release.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.sim.broker import Pki
from kiosk.update.download import download_release
from kiosk.update.release import ReleaseError, generate_release_key, load_release_public_key
from tests.support.release_server import ReleaseServer, serve_https
from tests.support.releases import small_release


@pytest.fixture
def served(tmp_path: Path, pki: Pki) -> Iterator[tuple[ReleaseServer, str, bytes, Path]]:
    rel, public, _ = small_release(tmp_path)
    with serve_https(tmp_path / "served", pki.server_cert_file, pki.server_key_file) as server:
        yield server, f"https://localhost:{server.port}/kiosk-9.9.9/", public, rel


def test_download_resumes_after_a_cut_and_verifies(
    served: tuple[ReleaseServer, str, bytes, Path], tmp_path: Path, pki: Pki
) -> None:
    server, url, public, _ = served
    server.cut["kiosk-9.9.9-py3-none-any.whl"] = 120_000
    dest = tmp_path / "dl"
    with pytest.raises(ReleaseError, match="cut after"):
        download_release(url, dest, public, ca_file=pki.ca_file, min_free_mb=0)
    part = dest / "wheels" / "kiosk-9.9.9-py3-none-any.whl.part"
    assert 0 < part.stat().st_size < 300_000  # kept for the resume
    said: list[str] = []
    rel = download_release(url, dest, public, ca_file=pki.ca_file, min_free_mb=0, say=said.append)
    assert rel.version == "9.9.9" and not part.exists()
    assert server.ranges == [f"bytes={120_000}-"], server.ranges  # resumed where it was cut
    fetched = int(said[0].split()[2])
    assert fetched < 300_000 + 50_000  # the first part was not fetched again
    # run again: everything is there, nothing is fetched
    said.clear()
    download_release(url, dest, public, ca_file=pki.ca_file, min_free_mb=0, say=said.append)
    assert said[0].split()[2] == "0"


def test_a_file_altered_on_the_server_is_discarded(
    served: tuple[ReleaseServer, str, bytes, Path], tmp_path: Path, pki: Pki
) -> None:
    _, url, public, rel = served
    victim = rel / "wheels" / "dep-1.0-py3-none-any.whl"
    victim.write_bytes(os.urandom(50_000))  # same size, other bytes
    with pytest.raises(ReleaseError, match="SHA-256 does not match"):
        download_release(url, tmp_path / "dl", public, ca_file=pki.ca_file, min_free_mb=0)
    assert not (tmp_path / "dl" / "wheels" / "dep-1.0-py3-none-any.whl").exists()
    assert not (tmp_path / "dl" / "wheels" / "dep-1.0-py3-none-any.whl.part").exists()


def test_a_forged_manifest_fetches_nothing_and_a_big_release_is_refused(
    served: tuple[ReleaseServer, str, bytes, Path], tmp_path: Path, pki: Pki
) -> None:
    _, url, public, _ = served
    other = tmp_path / "other"
    other.mkdir()
    generate_release_key(other / "k.pem", other / "k.pub")
    with pytest.raises(ReleaseError, match="signed by release key"):
        download_release(
            url,
            tmp_path / "dl1",
            load_release_public_key(other / "k.pub"),
            ca_file=pki.ca_file,
            min_free_mb=0,
        )
    assert not (tmp_path / "dl1" / "wheels").exists()
    with pytest.raises(ReleaseError, match="does not fit"):
        download_release(url, tmp_path / "dl2", public, ca_file=pki.ca_file, min_free_mb=10**9)
    assert not (tmp_path / "dl2" / "wheels").exists()


def test_plain_http_only_on_loopback(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="https://"):
        download_release("http://province.example/r/", tmp_path, b"\0" * 32)
