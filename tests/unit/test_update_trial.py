"""The running kiosk's side of an update (issue 16 req. 3 and 4): the "维护中 / updating" screen
while it switches and while a new version is on trial, no order and no technician meanwhile,
nothing sent until the supervisor commits, and sales again once it has, without a restart.

The whole app on the in-process board emulator (the `kiosk` fixture); the update state file
is written here as the installer and the supervisor write it (kiosk/update/supervisor.py), and
the gate (kiosk/update/gate.py) is ticked by hand instead of from its thread. The supervisor's
side (TRIAL_ENV, the counters of a restored store) is tests/unit/test_supervisor.py; the real
kiosk under the real supervisor, tests/integration/test_update_trial_rollback.py.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kiosk import contract as ui
from kiosk.update.gate import (
    SUPERVISED_ENV,
    TRIAL_ENV,
    UpdateGate,
    gate_province,
    supervised,
    trial_version,
)
from kiosk.update.supervisor import add_step, load_state, save_state
from tests.support.kiosk_app import OTHER, Kiosk

UPDATING = ui.OutOfServiceView("updating")


def write_state(root: Path, phase: str, version: str, **more: Any) -> None:
    state = load_state(root)
    state.update(phase=phase, pending={"version": version, "migrates": True}, **more)
    add_step(state, phase, version)
    save_state(root, state)


def gate(
    kiosk: Kiosk,
    root: Path,
    left: threading.Event,
    trial: str | None = None,
    *,
    switches: bool = True,
) -> UpdateGate:
    app = kiosk.app
    app.config = replace(app.config, update=replace(app.config.update, root=root))
    return UpdateGate(
        root,
        close=app.close_for_update,
        open_=app._open_after_update,
        leave=left.set,
        emit=app._update_events,
        reported_seq=lambda: int(app.store.settings.get("update.reported_seq") or 0),
        trial=trial,
        province_online=lambda: True,
        switches=switches,
    )


def update_records(kiosk: Kiosk) -> list[str]:
    with kiosk.app.store.read() as conn:
        rows = conn.execute("SELECT event_id FROM outbox WHERE kind = 'update'").fetchall()
    return [str(r[0]) for r in rows]


def test_switch_only_when_idle_and_updating_on_screen(kiosk: Kiosk, tmp_path: Path) -> None:
    root = tmp_path / "opt"
    write_state(root, "staged", "9.9")
    left = threading.Event()
    kiosk.wait(lambda v: v.mode == "idle")
    # under the plain unit nobody would switch: it stays staged, the kiosk sells on
    assert gate(kiosk, root, left, switches=False).tick() is False
    assert load_state(root)["phase"] == "staged" and kiosk.c.view().mode == "idle"
    assert supervised({SUPERVISED_ENV: "1"}) and not supervised({})
    g = gate(kiosk, root, left)
    kiosk.c.post(ui.AddToCart(OTHER))  # a shopper is choosing: no switch
    kiosk.wait(lambda v: v.mode == "shopping")
    assert g.tick() is False and not left.is_set()
    assert load_state(root)["phase"] == "staged"
    kiosk.c.post(ui.BackToIdle("shopper"))
    kiosk.wait(lambda v: v.mode == "idle")
    assert g.tick() is True and left.is_set()
    state = load_state(root)
    assert state["phase"] == "switching" and state["pending"]["gate_province"] is True
    v = kiosk.wait(lambda v: v.out_of_service == UPDATING)
    assert v.mode == "out_of_service"
    # the old version, about to stop: no order, no technician
    kiosk.c.post(ui.AddToCart(OTHER))
    attempts = kiosk.c.view().service.pin.attempts
    kiosk.c.post(ui.ServiceLogin(ok=True, technician="t1"))
    v = kiosk.wait(lambda v: v.service.pin.attempts > attempts)
    assert v.out_of_service == UPDATING and v.cart == ()
    assert kiosk.c.call(lambda: kiosk.c.access.technician) == ""


def test_on_trial_closed_and_silent_until_committed(kiosk: Kiosk, tmp_path: Path) -> None:
    root = tmp_path / "opt"
    write_state(root, "trial", "9.9")
    state = load_state(root)
    state["pending"]["gate_province"] = True  # the version before was connected
    save_state(root, state)
    assert trial_version(root, {TRIAL_ENV: "9.9"}) == "9.9"
    assert trial_version(root, {}) is None  # a plain start is no trial
    assert trial_version(root, {TRIAL_ENV: "9.8"}) is None  # not the version on trial
    assert gate_province(root) is True
    app = kiosk.app
    app.trial = "9.9"  # as App.__init__ finds it under the supervisor
    kiosk.c.call(lambda: setattr(kiosk.c, "updating", True))
    kiosk.wait(lambda v: v.out_of_service == UPDATING)
    left = threading.Event()
    g = gate(kiosk, root, left, trial="9.9")
    # the health gate wants the province link while on trial, and only then
    app.sync = SimpleNamespace(client=SimpleNamespace(connected=False))  # type: ignore[assignment]
    app.start_watchdog()
    assert app.watchdog is not None
    try:
        assert app.watchdog.unhealthy() == ["province_link"]
        app.sync.client.connected = True  # type: ignore[union-attr]
        assert app.watchdog.unhealthy() == []
        app.sync.client.connected = False  # type: ignore[union-attr]
        assert g.tick() is False
        kiosk.c.post(ui.AddToCart(OTHER))
        assert kiosk.c.view().out_of_service == UPDATING
        assert update_records(kiosk) == []  # nothing a rollback would lose
        # the supervisor commits: sales open without a restart, the steps are sent
        state = load_state(root)
        state.update(phase="idle", running="9.9", pending=None)
        add_step(state, "committed", "9.9")
        save_state(root, state)
        assert g.tick() is False and not left.is_set()
        assert app.trial is None
        assert app.watchdog.unhealthy() == []  # a committed version: no province in the gate
        kiosk.wait(lambda v: v.mode == "idle")
        assert len(update_records(kiosk)) == 2
    finally:
        app.watchdog.stop()
        app.sync = None
    order = kiosk.checkout(OTHER)
    assert order.total_fen > 0
