"""The kiosk's side of an update: verify a release, install it into a new venv, check the config
with the new version, and stage it for the switch.

Owns: the checks before a release may run on this cabinet (signature with the pinned release
key, every file's hash, the store schema range, the disk budget), the install (a new venv,
`pip install --no-index --require-hashes`, nothing fetched), `<venv>/bin/kiosk config check`,
and the `staged` state (kiosk/update/supervisor.py owns the file and what follows). Never
touches the running version: its venv and `current` stay as they are until the switch.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.config import KioskConfig
from kiosk.core.sale import FINAL_STATES
from kiosk.update.release import (
    Release,
    ReleaseError,
    load_release_public_key,
    verify_release,
)
from kiosk.update.supervisor import add_step, load_state, save_state, store_schema

__all__ = ["InstallError", "Staging", "fetch_and_stage", "stage_release"]

INSTALLED_MARK = ".kiosk-installed"  # written last: a venv without it is half-installed
BUSY_PHASES = ("switching", "trial", "rolling_back")


class InstallError(Exception):
    """The release is refused or could not be installed; nothing switched. Says why."""


@dataclass(frozen=True)
class Staging:
    root: Path
    config: Path
    data_dir: Path
    public_key: bytes
    min_free_mb: int = 200

    @classmethod
    def for_config(cls, cfg: KioskConfig) -> Staging:
        """Where and how this kiosk stages releases, from its config; the caller has checked
        that `update.release_public_key` is set (InstallError otherwise)."""
        if cfg.update.release_public_key is None:
            raise InstallError("update.release_public_key is not set")
        return cls(
            root=cfg.update.root,
            config=cfg.source.resolve(),
            data_dir=cfg.store.data_dir,
            public_key=load_release_public_key(cfg.update.release_public_key),
            min_free_mb=cfg.update.min_free_mb,
        )


def _clean_env() -> dict[str, str]:
    """pip sees only what the command line names: no index, no config, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHONPATH"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _run(cmd: list[str], what: str, timeout: float = 900) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env(), timeout=timeout)
    if done.returncode != 0:
        raise InstallError(f"{what} failed (exit {done.returncode}): {done.stderr[-1500:]}")


def _check(rel: Release, s: Staging, state: dict[str, Any]) -> int:
    """The release may run here; returns the store's schema now."""
    if state["phase"] in BUSY_PHASES:
        raise InstallError(f"an update is in progress (phase {state['phase']}); try later")
    if rel.version == state.get("running"):
        raise InstallError(f"version {rel.version} is the one running")
    schema = store_schema(s.data_dir)
    if schema > rel.store_schema_max:
        raise InstallError(
            f"the store is at schema {schema}; version {rel.version} knows up to "
            f"{rel.store_schema_max} and could not open it"
        )
    if schema < rel.store_schema_min:
        raise InstallError(
            f"the store is at schema {schema}; version {rel.version} needs at least "
            f"{rel.store_schema_min} (install the versions in between first)"
        )
    s.root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(s.root).free
    need = 4 * rel.size + s.min_free_mb * 1_000_000  # unpacked wheels take about 3x
    if free < need:
        raise InstallError(
            f"not enough disk for version {rel.version}: {free // 1_000_000} MB free at "
            f"{s.root}, {need // 1_000_000} MB needed (update.min_free_mb included)"
        )
    return schema


def _open_orders(data_dir: Path) -> list[str]:
    """Orders of the stopped kiosk that are not closed (`--now`): a version on trial would
    resume them (a vend, a ledger record) into a store a rollback may put back."""
    db = data_dir / "kiosk.db"
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        closed = sorted(str(st) for st in FINAL_STATES)
        marks = ", ".join("?" * len(closed))
        rows = conn.execute(
            f"SELECT order_id, state FROM orders WHERE state NOT IN ({marks})", closed
        ).fetchall()
    except sqlite3.Error:
        return []  # no orders table yet
    finally:
        conn.close()
    return [f"{order_id} ({state})" for order_id, state in rows]


def _install(rel: Release, venv: Path) -> None:
    if venv.exists():  # a half-installed try (no mark) or a reinstall: start clean
        shutil.rmtree(venv)
    _run([sys.executable, "-m", "venv", str(venv)], "creating the venv")
    _run(
        [
            *(str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index"),
            *("--find-links", str(rel.wheels), "--require-hashes", "-r", str(rel.lock)),
        ],
        "pip install --no-index --require-hashes",
    )


def stage_release(
    path: Path, s: Staging, *, switch_now: bool = False, say: Any = print
) -> dict[str, Any]:
    """Verify, install, check and stage the release at `path`; returns the new state.
    `switch_now`: the kiosk is stopped (a technician at the cabinet): the supervisor switches
    at its next start instead of waiting for the running kiosk to be idle."""
    state = load_state(s.root)
    version = None
    try:
        rel = verify_release(path, s.public_key)
        version = rel.version
        say(f"release {rel.version}: signature and {len(rel.files)} file hashes OK")
        schema = _check(rel, s, state)
        if switch_now and (open_orders := _open_orders(s.data_dir)):
            raise InstallError(
                f"order {', '.join(open_orders[:3])} is still open: start the kiosk so it "
                "finishes it; then the update switches when idle (without --now)"
            )
        add_step(state, "verified", version, key_id=rel.key_id)
        save_state(s.root, state)
        venv = s.root / "versions" / rel.version
        if not (venv / INSTALLED_MARK).exists():
            say(f"installing into {venv} (no index, hashes required)")
            _install(rel, venv)
            (venv / INSTALLED_MARK).write_text(rel.version + "\n", encoding="utf-8")
        add_step(state, "installed", version, venv=str(venv))
        save_state(s.root, state)
        _run(
            [str(venv / "bin" / "kiosk"), "config", "check", "--config", str(s.config)],
            f"the config check with version {version}",
        )
        say(f"config {s.config} OK for version {version}")
        migrates = rel.store_schema_max > schema
        state.update(
            phase="switching" if switch_now else "staged",
            pending={
                "version": version,
                "migrates": migrates,
                "from_schema": schema,
                "to_schema": rel.store_schema_max,
                "notes": rel.notes,
            },
        )
        add_step(state, "staged", version, migrates=migrates, switch_now=switch_now)
        save_state(s.root, state)
        return state
    except (ReleaseError, InstallError, OSError, subprocess.TimeoutExpired) as e:
        state = load_state(s.root)
        reason = str(e)
        state["last_result"] = {"version": version, "result": "refused", "reason": reason}
        add_step(state, "refused", version, reason=reason[:500])
        save_state(s.root, state)
        raise InstallError(reason) from e


def fetch_and_stage(
    source: str,
    s: Staging,
    *,
    ca_file: Path | None = None,
    switch_now: bool = False,
    say: Any = print,
) -> dict[str, Any]:
    """`source` a directory or an https:// URL (fetched into UPDATE_ROOT/downloads first, see
    kiosk/update/download.py), then `stage_release`. A refused download is a `refused` step
    too. Raises InstallError."""
    path = Path(source)
    if source.startswith(("https://", "http://")):
        import hashlib

        from kiosk.update.download import download_release

        where = s.root / "downloads" / hashlib.sha256(source.encode()).hexdigest()[:16]
        try:
            path = download_release(
                source, where, s.public_key, ca_file=ca_file, min_free_mb=s.min_free_mb, say=say
            ).path
        except (ReleaseError, OSError) as e:
            state = load_state(s.root)
            state["last_result"] = {"version": None, "result": "refused", "reason": str(e)}
            add_step(state, "refused", None, reason=str(e)[:500], url=source)
            save_state(s.root, state)
            raise InstallError(str(e)) from e
    return stage_release(path, s, switch_now=switch_now, say=say)
