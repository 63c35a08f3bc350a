"""The `kiosk` commands that create or rebuild the store keep it private whatever the umask
(issue 14 req. 10): the data dir 0700, kiosk.db and its -wal/-shm files 0600, also when a
technician runs them by hand from a shell with umask 000 (the store layer's own tests are in
test_store.py)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from kiosk.store.db import DB_FILENAME
from tests.support.config import kiosk_config, write_config
from tests.support.paths import child_env


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def kiosk(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kiosk.cli", *args, "--config", str(cfg)],
        env=child_env("KIOSK"),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.umask(0),  # the loosest shell
    )


def assert_private(data: Path) -> None:
    assert _mode(data) == 0o700, oct(_mode(data))
    files = [p for p in data.iterdir() if p.name.startswith(DB_FILENAME)]
    assert any(p.name == DB_FILENAME for p in files), files
    for p in files:
        assert _mode(p) == 0o600, (p.name, oct(_mode(p)))


def test_store_commands_under_umask_000(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    cfg = write_config(tmp_path / "kiosk.toml", kiosk_config(port="loop://", data_dir=data))
    r = kiosk(cfg, "store", "seed-demo")
    assert r.returncode == 0, r.stderr
    assert_private(data)
    for args in (("ledger", "verify"), ("store", "check"), ("planogram", "export")):
        r = kiosk(cfg, *args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        assert_private(data)

    # a damaged database moved aside and rebuilt by `kiosk store recover`
    (data / DB_FILENAME).write_bytes(b"not a database " * 300)
    for side in ("-wal", "-shm"):
        (data / (DB_FILENAME + side)).unlink(missing_ok=True)
    assert kiosk(cfg, "store", "check").returncode != 0
    r = kiosk(cfg, "store", "recover")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert_private(data)
