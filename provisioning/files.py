"""Safe file writing for kiosk-provision: atomic replace, owner-only modes, backups.

Owns: how provisioning writes a file that must survive power loss half-way (temp file in the
same directory, fsync, rename, fsync of the directory), the backup kept before an overwrite, and
editing single keys of the kiosk TOML config (read, change, validate, replace), and how a
subcommand loads the config it works on. Never writes a config that `kiosk.config` refuses, and
never prints file contents.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

from kiosk.config import ConfigError, KioskConfig, load_config, resolve_config_path
from kiosk.textfile import say

__all__ = ["backup", "command_config", "update_config", "write_atomic", "write_config_checked"]


def command_config(config_arg: str | None, hint: str = "") -> tuple[Path, KioskConfig] | None:
    """The config a subcommand works on (`--config`, $KIOSK_CONFIG, /etc/kiosk/kiosk.toml).

    On a config that cannot be used, prints every problem and returns None: the caller exits 2.
    """
    path = resolve_config_path(config_arg)
    try:
        return path, load_config(path)
    except ConfigError as e:
        print(say("config_unusable", hint=hint, error=e))
        return None


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _tmp_write(path: Path, data: bytes, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # umask must not widen or narrow it
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` all at once, with `mode` (default owner read/write only)."""
    tmp = _tmp_write(path, data, mode)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def backup(path: Path) -> Path | None:
    """Copy an existing file to `<name>.bak-<YYYYmmdd-HHMMSS>` (mode kept); None if absent."""
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = path.with_name(f"{path.name}.bak-{stamp}")
    n = 1
    while dest.exists():
        dest = path.with_name(f"{path.name}.bak-{stamp}-{n}")
        n += 1
    shutil.copy2(path, dest)
    os.chmod(dest, 0o600)
    return dest


def write_config_checked(path: Path, raw: Mapping[str, Any]) -> KioskConfig:
    """Write `raw` as TOML next to `path`, load it with kiosk.config, and only then replace
    `path`. Raises ConfigError (nothing replaced) when the kiosk would refuse it."""
    data = tomli_w.dumps(dict(raw)).encode("utf-8")
    tmp = _tmp_write(path, data, 0o600)
    try:
        cfg = load_config(tmp)
    except ConfigError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return cfg


def update_config(path: Path, changes: Mapping[str, Any], keep_backup: bool = True) -> KioskConfig:
    """Set dotted keys (`"sync.cert_file": "..."`) in the config file, checked and atomic."""
    raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    for dotted, value in changes.items():
        section, _, key = dotted.partition(".")
        raw.setdefault(section, {})[key] = value
    if keep_backup:
        backup(path)
    return write_config_checked(path, raw)
