"""The running kiosk's part of an update: switch to a staged version only when idle, and turn
each update step into an `events/update` record.

Owns: the poll of the update state (kiosk/update/supervisor.py's file) from a daemon thread.
When the state is `staged` and the kiosk is idle (no open order, no technician in the service
menu, not dispensing: `idle()`, asked of the controller), it writes `switching` (on disk first)
and asks the kiosk to leave its run (`leave()`); the supervisor then backs the store up if
needed and starts the new version. Never decides what idle means, never starts a version.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kiosk.log import log_event
from kiosk.update.supervisor import add_step, load_state, save_state

__all__ = ["UpdateGate", "UpdateHistory", "software_report"]

log = logging.getLogger("kiosk.update")


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
        idle: Callable[[], bool],
        leave: Callable[[], None],
        emit: Callable[[list[Mapping[str, Any]]], None],
        reported_seq: Callable[[], int],
        poll_s: float = 2.0,
    ) -> None:
        self.root = root
        self.idle, self.leave, self.emit = idle, leave, emit
        self.reported_seq = reported_seq
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
        """One poll: send new steps; switch if staged and idle. True when leaving."""
        if not (self.root / "state.json").exists():
            return False
        state = load_state(self.root)
        done = self.reported_seq()
        new = [h for h in state.get("history", []) if int(h.get("seq", 0)) > done]
        if new:
            self.emit(new)
        if state["phase"] != "staged" or not self.idle():
            return False
        version = state["pending"]["version"]
        state["phase"] = "switching"
        add_step(state, "switching", version)
        save_state(self.root, state)  # on disk before the kiosk stops for it
        log_event(log, "update.switching", version=version)
        self.leave()
        return True
