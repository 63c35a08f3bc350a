"""The update side of one simulated kiosk (`kiosk fleet-sim --scenario rollout`).

A simulated kiosk installs no wheels. It takes the province's signed `install_release` command
exactly as a kiosk does (kiosk.sync.signing `TrustPolicy.accept_command`: signature with the
province key, for this kiosk, unexpired, nonce never seen, remembered in its store), then plays
the steps a real kiosk and its supervisor take (kiosk/update: installer, gate, supervisor),
written with the supervisor's own state functions into `<kiosk dir>/update/state.json`, and
reports them as a real kiosk does (docs/mqtt-api.yaml): each step an `events/update` record
(HIGH, event id `update-<kiosk>-<unix s>-<step seq>`), `UPDATE_ROLLED_BACK` (critical alarm)
after a rollback, and a `reported` record whose `update` is `software_report` of that state.

- a good release: verified, installed, staged (after `install_s`); switching, switch,
  trial_boot (the "restart": no sale for `switch_s`); committed after `health_s`, running it;
- a bad one (its version in `bad_versions`: it "crashes at start"): verified, installed,
  staged; switching, switch, trial_boot x `max_boots`, rollback, rolled_back (the previous
  version runs again, the alarm is raised).

The release version is the last path segment of the command's URL (`.../releases/<version>/`,
the layout `kiosk province-sim release publish` serves). Not simulated: the download and the
release's signature and hash checks (the real kiosk's, tests/integration/test_update_rollback.py),
and the restart's reconnection (the kiosk keeps its MQTT connection; it only stops selling).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiosk.store import Store
    from kiosk.sync.outbox import Outbox

__all__ = ["SimUpdater", "SimUpdates", "version_of_url"]


@dataclass(frozen=True)
class SimUpdates:
    """How simulated kiosks behave on `install_release` (plain data: crosses a spawn)."""

    province_key: bytes = b""
    bad_versions: frozenset[str] = frozenset()
    install_s: float = 1.0  # download, verify, pip install, config check
    switch_s: float = 0.5  # the kiosk stops and the supervisor starts the new version
    health_s: float = 1.0  # READY + healthy -> committed (or: the crash loop -> rolled back)
    max_boots: int = 3
    running: str = ""  # the version every kiosk runs at start ("" = this package's)


def version_of_url(url: str) -> str:
    """`https://host/releases/1.2.0/` -> `1.2.0`."""
    return url.rstrip("/").rsplit("/", 1)[-1]


class SimUpdater:
    """One kiosk's update state and its records; `command(env)` takes a downlink command."""

    def __init__(
        self,
        kiosk_id: str,
        root: Path,
        store: Store,
        outbox: Outbox,
        behaviour: SimUpdates,
        wake: Callable[[], None],
        stop: threading.Event,
    ) -> None:
        from kiosk import __version__
        from kiosk.sync.signing import Keyring, TrustPolicy

        self.kid, self.root, self.outbox, self.b = kiosk_id, root, outbox, behaviour
        self.wake, self._stop = wake, stop
        self.running = behaviour.running or __version__
        self.policy = TrustPolicy(Keyring([behaviour.province_key]), store, kiosk_id=kiosk_id)
        self.lock = threading.Lock()
        self.commands: list[tuple[str, float]] = []  # (version, time received) per install_release
        self.rejected = 0
        self.switching = False  # between switching and the new (or old) version's start
        self._busy: threading.Thread | None = None
        self._reported_seq = 0

    # --- downlink --------------------------------------------------------------------------

    def command(self, env: dict[str, Any]) -> None:
        """A message on this kiosk's commands topic: checked like a kiosk does, then run."""
        from kiosk.sync.signing import TrustError

        try:
            body = self.policy.accept_command(env, time.time())  # province and kiosk: one clock
        except TrustError:
            with self.lock:
                self.rejected += 1
            return
        args = body.get("args") or {}
        if body["command"] != "install_release" or not isinstance(args.get("url"), str):
            return
        version = version_of_url(args["url"])
        with self.lock:
            self.commands.append((version, time.time()))
            if self._busy is not None and self._busy.is_alive():
                return  # an install runs (the kiosk says update.busy and ignores it)
            self._busy = threading.Thread(
                target=self._install, args=(version, args["url"]), daemon=True, name="update"
            )
            self._busy.start()

    # --- the steps ---------------------------------------------------------------------------

    def _install(self, version: str, url: str) -> None:
        from kiosk.update.supervisor import add_step, load_state, save_state

        b = self.b
        state = load_state(self.root)
        if state["running"] is None:
            state["running"] = self.running
        if self._stop.wait(b.install_s):
            return
        add_step(state, "verified", version, key_id="sim")
        add_step(state, "installed", version, venv=str(self.root / "versions" / version))
        state.update(phase="staged", pending={"version": version, "migrates": False, "url": url})
        add_step(state, "staged", version, migrates=False, switch_now=False)
        self._save_and_send(state)
        # the gate: the kiosk is idle between two sales; the supervisor switches
        self.switching = True
        add_step(state, "switching", version)
        previous = state["running"]
        state.update(phase="trial", boots=0, previous=previous)
        add_step(state, "switch", version, previous=previous)
        save_state(self.root, state)
        if self._stop.wait(b.switch_s):
            return
        if version not in b.bad_versions:
            state["boots"] = 1
            add_step(state, "trial_boot", version, boot=1)
            self.running = version  # the new version runs (on trial) and reports
            self.switching = False
            self._save_and_send(state)
            if self._stop.wait(b.health_s):
                return
            now = round(time.time(), 3)
            state.update(phase="idle", running=version, pending=None, boots=0)
            state["last_result"] = {"version": version, "result": "committed", "reason": ""}
            state["last_result"]["at"] = now
            add_step(state, "committed", version, previous=previous)
        else:
            for boot in range(1, b.max_boots + 1):  # each start crashes at once
                state["boots"] = boot
                add_step(state, "trial_boot", version, boot=boot)
            if self._stop.wait(b.health_s):
                return
            reason = f"{b.max_boots} boots without becoming healthy (crash loop)"
            state["phase"] = "rolling_back"
            add_step(state, "rollback", version, reason=reason)
            state.update(phase="idle", running=previous, pending=None, boots=0)
            state["last_result"] = {
                "version": version,
                "result": "rolled_back",
                "reason": reason,
                "at": round(time.time(), 3),
            }
            add_step(
                state, "rolled_back", version, running=previous, store_restored=False, reason=reason
            )
            self.switching = False
        self._save_and_send(state)

    def _save_and_send(self, state: dict[str, Any]) -> None:
        """The state on disk, then its new steps (+ alarm) and a `reported`, in one commit."""
        from kiosk.sync import messages
        from kiosk.sync.outbox import OutboxItem, Priority
        from kiosk.update.supervisor import save_state

        save_state(self.root, state)
        items = []
        for h in state["history"]:
            if int(h["seq"]) <= self._reported_seq:
                continue
            eid = f"update-{self.kid}-{int(h['at'])}-{h['seq']}"
            items.append(OutboxItem("update", {"kiosk_id": self.kid, **h}, Priority.HIGH, eid))
            if h["step"] == "rolled_back":
                alarm = messages.alarm(
                    "UPDATE_ROLLED_BACK",
                    f"version {h['version']}: {h.get('reason', '')}".strip(),
                    severity="critical",
                    version=h["version"],
                )
                items.append(OutboxItem("alarm", alarm, Priority.HIGH))
            self._reported_seq = int(h["seq"])
        items.append(OutboxItem("reported", self.reported(), Priority.NORMAL))
        self.outbox.append_many(items)
        self.wake()

    def reported(self) -> dict[str, Any]:
        """The `reported` body a kiosk running `self.running` sends now."""
        from kiosk.sync import messages
        from kiosk.update.gate import software_report

        ob = self.outbox
        return messages.reported_state(
            applied_versions={},
            stock={},
            software_version=self.running,
            outbox_depth={p.name.lower(): n for p, n in ob.depth().items()},
            outbox_dropped={p.name.lower(): n for p, n in ob.dropped().items()},
            update=software_report(self.root, self.running),
        )

    def report(self) -> dict[str, Any]:
        with self.lock:
            cmds = list(self.commands)
            busy = self._busy is not None and self._busy.is_alive()
        return {
            "running": self.running,
            "commands": cmds,
            "rejected_commands": self.rejected,
            "busy": busy,  # an update under way (not yet committed or rolled back)
        }
