"""The running kiosk's part of an update: switch to a staged version only when idle, sell
nothing while on trial, and turn each update step into an `events/update` record.

Owns: the poll of the update state (kiosk/update/supervisor.py's file) from a daemon thread.
When the state is `staged` and the kiosk is idle (no open order, no technician in the service
menu, not dispensing), `close()` (asked of the controller) takes it out of service with the
reason `updating` in the same step, it writes `switching` (on disk first) and asks the kiosk to
leave its run (`leave()`); the supervisor then backs the store up if needed and starts the new
version (only under the supervisor, SUPERVISED_ENV: under the plain unit a staged release
stays staged and the kiosk sells on). A version started on trial (the supervisor sets
TRIAL_ENV) stays closed and sends no step until the supervisor commits it (the state says
it runs this version): then `open()`. Never decides what idle means, never starts a version.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kiosk.log import log_event
from kiosk.update.supervisor import add_step, load_state, save_state

__all__ = [
    "SUPERVISED_ENV",
    "TRIAL_ENV",
    "UpdateGate",
    "UpdateHistory",
    "software_report",
    "supervised",
    "trial_version",
]

log = logging.getLogger("kiosk.update")
TRIAL_ENV = "KIOSK_UPDATE_TRIAL"  # set by the supervisor for a version it tries: its version
SUPERVISED_ENV = "KIOSK_UPDATE_SUPERVISED"  # set by the supervisor for every kiosk it runs


def supervised(env: Mapping[str, str] | None = None) -> bool:
    """Whether the update supervisor runs this kiosk: only then is there anyone to switch
    (under the plain unit a staged release stays staged)."""
    return (os.environ if env is None else env).get(SUPERVISED_ENV) == "1"


def trial_version(root: Path, env: Mapping[str, str] | None = None) -> str | None:
    """The version this kiosk runs on trial, None when it is not on trial: the supervisor
    started it as the version it tries and the state file still says so. A plain restart of a
    committed version (no TRIAL_ENV, or the state moved on) is not a trial."""
    version = (os.environ if env is None else env).get(TRIAL_ENV, "")
    if not version:
        return None
    try:
        state = load_state(root)
    except (OSError, ValueError):
        return None
    pending = state.get("pending") or {}
    return version if state["phase"] == "trial" and pending.get("version") == version else None


def gate_province(root: Path) -> bool:
    """Whether the version on trial must reach the province to be committed: it must when the
    version before it was connected when it switched (a cabinet updated by hand while offline
    is not rolled back for being offline)."""
    try:
        return bool((load_state(root).get("pending") or {}).get("gate_province"))
    except (OSError, ValueError):
        return False


def software_report(root: Path, running: str) -> dict[str, Any]:
    """For `reported`: the running version, the pending one and the last update's result."""
    try:
        state = load_state(root)
    except (OSError, ValueError):
        return {"running": running, "pending": None, "phase": "unknown", "last_result": None}
    pending = state.get("pending") or {}
    return {
        "running": running,
        "pending": pending.get("version"),
        "phase": state.get("phase"),
        "last_result": state.get("last_result"),
    }


class UpdateHistory:
    """The service menu's version history: the last update steps that changed what runs, as
    short lines, newest first; the state file is read again only when it changed."""

    STEPS = ("committed", "rolled_back", "refused", "staged")

    def __init__(self, root: Path, keep: int = 6) -> None:
        self.path = root / "state.json"
        self.keep = keep
        self._mtime: float | None = None
        self._lines: tuple[str, ...] = ()

    def lines(self) -> tuple[str, ...]:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return ()
        if mtime != self._mtime:
            try:
                history = load_state(self.path.parent).get("history", [])
            except (OSError, ValueError):
                return self._lines
            picked = [h for h in history if h.get("step") in self.STEPS][-self.keep :]
            self._lines = tuple(
                f"{time.strftime('%m-%d %H:%M', time.localtime(float(h.get('at', 0))))} "
                f"{h.get('version') or '?'} {h['step']}"
                for h in reversed(picked)
            )
            self._mtime = mtime
        return self._lines


class UpdateGate:
    def __init__(
        self,
        root: Path,
        *,
        close: Callable[[], bool],
        open_: Callable[[], None],
        leave: Callable[[], None],
        emit: Callable[[list[Mapping[str, Any]]], None],
        reported_seq: Callable[[], int],
        trial: str | None = None,
        province_online: Callable[[], bool] | None = None,
        switches: bool = False,
        poll_s: float = 2.0,
    ) -> None:
        """`close()`: if idle, out of service for the update (True), else nothing (False);
        `open_()`: back in service; `trial`: this kiosk's version when it runs on trial;
        `province_online`: the province link's state, noted at the switch (`gate_province`);
        `switches`: a supervisor runs this kiosk (`supervised()`): without one, leaving for a
        staged release would only restart the same version."""
        self.root = root
        self.close, self.open, self.leave, self.emit = close, open_, leave, emit
        self.reported_seq = reported_seq
        self.trial = trial
        self.switches = switches
        self._told_unsupervised = False
        self.province_online = province_online
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> UpdateGate:
        self._thread = threading.Thread(target=self._run, name="update-gate", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                if self.tick():
                    return
            except Exception:  # the kiosk sells on; the next poll tries again
                log.exception("update gate")

    def tick(self) -> bool:
        """One poll: on trial, open once committed; send new steps; switch if staged and
        idle. True when leaving."""
        if not (self.root / "state.json").exists():
            return False
        state = load_state(self.root)
        if self.trial is not None:
            # committed: running this version, and no trial or rollback under way (a next
            # release may already be staged)
            if state.get("running") != self.trial or state["phase"] not in ("idle", "staged"):
                return False  # still on trial (or being rolled back): closed, nothing sent
            log_event(log, "update.open", version=self.trial)
            self.trial = None
            self.open()
        done = self.reported_seq()
        new = [h for h in state.get("history", []) if int(h.get("seq", 0)) > done]
        if new:
            self.emit(new)
        if state["phase"] != "staged":
            return False
        if not self.switches:
            if not self._told_unsupervised:  # once: the unit to install is the supervised one
                log_event(
                    log,
                    "update.staged_unsupervised",
                    logging.WARNING,
                    version=state["pending"]["version"],
                    fix="kiosk-provision install-service (the supervised unit)",
                )
                self._told_unsupervised = True
            return False
        if not self.close():
            return False
        try:
            province = self.province_online is not None and self.province_online()
            version = state["pending"]["version"]
            state["phase"] = "switching"
            state["pending"]["gate_province"] = bool(province)
            add_step(state, "switching", version, province_link=bool(province))
            save_state(self.root, state)  # on disk before the kiosk stops for it
        except BaseException:
            self.open()  # not switching after all: sell on
            raise
        log_event(log, "update.switching", version=version)
        self.leave()
        return True
