"""Attack (issue 14 req. 11, "PIN lockout across a restart"): brute-forcing the service PIN.

Pieces: the `kiosk_world` fixture (tests/support/fixtures.py): real Mosquitto with TLS and the
project's broker config, the province simulator, the board emulator on a pty, a seeded store
and a TLS config. The kiosk is the real thing built by `build_app(sync=True)`
(controller, store, outbox, MQTT client) with the real UI (`UiApp`, offscreen) on top: PINs are
typed on the keypad by pygame touch events. Its clock is the system clock plus a forward jump
the test can add (waiting out a 30 s lock in real time proves nothing more).

1. three wrong PINs lock the menu for 30 s; the right PIN is then refused unchecked; the
   province receives one PIN_LOCKOUT alarm (events/alarm, the one alarm shape);
2. the kiosk restarts on the same store: still locked, the right PIN still refused;
3. after the lock, one more wrong PIN locks for 60 s (the delay grew), a second alarm;
4. after that the right PIN logs technician T0042 in; the login and a test vend reach the
   province as technician records carrying `technician = "T0042"`;
5. the same field config with the published demo PIN is refused at start, naming the key.
"""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pygame
import pytest
import tomli_w

from kiosk.app import App, build_app
from kiosk.config import ConfigError, load_config, technicians
from kiosk.core.pin import DEMO_PIN_HASH, hash_pin
from kiosk.sim.province import ProvinceSimulator
from kiosk.ui.app import UiApp, default_font
from kiosk.ui.events import notify_view_changed
from tests.support.child import run_kiosk
from tests.support.fixtures import KioskWorld
from tests.support.kiosk_node import KIOSK_A

PIN = "802461"
WAIT = 30.0


class JumpClock:
    """The system clock, plus forward jumps the test adds (wall and monotonic alike)."""

    def __init__(self) -> None:
        self.skew = 0.0

    def time(self) -> float:
        return time.time() + self.skew

    def monotonic(self) -> float:
        return time.monotonic() + self.skew

    def jump(self, seconds: float) -> None:
        self.skew += seconds


def _eventually(pred: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Screen:
    """The real UI on the real controller, offscreen, driven by touch events."""

    def __init__(self, app: App) -> None:
        size = (1080, 1920)
        self.app = app
        self.ui = UiApp(
            app.controller,
            app.config.ui,
            app.clock,
            surface=pygame.Surface(size),
            font=default_font(),
            technicians=technicians(app.config),
        )
        app.controller.set_notify(notify_view_changed)
        self.turns()

    def turns(self) -> None:
        for _ in range(4):
            self.ui.step(block=False)

    def names(self) -> list[str]:
        return [h.name for h in self.ui.hits]

    def tap(self, name: str) -> None:
        (rect,) = [h.rect for h in self.ui.hits if h.name == name] or [None]
        assert rect is not None, f"no {name!r} on {self.ui.top.name}: {self.names()}"
        w, h = self.ui.surface.get_size()
        x, y = (rect.centerx + 0.5) / w, (rect.centery + 0.5) / h
        for kind in (pygame.FINGERDOWN, pygame.FINGERUP):
            ev = pygame.event.Event(kind, x=x, y=y, dx=0.0, dy=0.0, finger_id=1, touch_id=1)
            pygame.event.post(ev)
        self.turns()

    def settle(self) -> None:
        """Until no PIN is being checked and the controller has counted the last one."""

        def idle() -> bool:
            self.turns()
            return not getattr(self.ui.top, "busy", False)

        _eventually(idle, "the PIN check and the controller's count")

    def enter(self, pin: str) -> None:
        self.settle()
        for d in pin:
            self.tap(f"pin-{d}")
        _eventually(lambda: self.turns() or "pin-ok" in self.names(), "the OK key", 5)
        self.tap("pin-ok")
        self.settle()
        self.turns()


def _start(config: Path, clock: JumpClock) -> App:
    app = build_app(
        load_config(config),
        clock=clock,
        sync=True,
        sync_options={"client_options": {"backoff_base_s": 0.05, "backoff_cap_s": 0.5}},
    )
    app.start()
    assert app.sync is not None and app.sync.client.wait_connected(20), "kiosk did not connect"
    return app


def _alarms(province: ProvinceSimulator) -> list[dict[str, Any]]:
    return [
        e["body"]
        for e in province.events(KIOSK_A)
        if e["kind"] == "alarm" and e["body"].get("code") == "PIN_LOCKOUT"
    ]


def _technician_records(province: ProvinceSimulator) -> list[dict[str, Any]]:
    return [e["body"] for e in province.events(KIOSK_A) if e["kind"] == "technician"]


@pytest.fixture
def display(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SDL_VIDEODRIVER", os.environ.get("SDL_VIDEODRIVER", "dummy"))
    pygame.display.init()
    pygame.freetype.init()
    yield
    pygame.event.get()


def _with_technicians(config: Path, *techs: tuple[str, str]) -> Path:
    raw = tomllib.loads(config.read_text(encoding="utf-8"))
    raw["service"] = {"technicians": [{"id": i, "pin_hash": h} for i, h in techs]}
    config.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return config


def test_pin_lockout_survives_a_restart_and_alarms_the_province(
    kiosk_world: KioskWorld, display: None
) -> None:
    province = kiosk_world.province
    cfg = _with_technicians(
        kiosk_world.config,
        ("T0042", hash_pin(PIN, iterations=1000)),
        ("T0057", hash_pin("975310", iterations=1000)),
    )
    clock = JumpClock()

    # --- 1. brute force: three wrong PINs -------------------------------------------------
    app = _start(cfg, clock)
    try:
        screen = Screen(app)
        screen.ui.open_service()
        screen.turns()
        assert screen.ui.top.name == "service_pin"
        for guess in ("000000", "123456", "111111"):
            screen.enter(guess)
        pin = app.controller.view().service.pin
        assert pin.failures == 3 and pin.locked_until is not None
        assert pin.locked_until - clock.monotonic() == pytest.approx(30, abs=3)
        assert any("30" in r.text and "秒" in r.text for r in screen.ui.texts)
        screen.enter(PIN)  # the right PIN, refused unchecked while locked
        assert screen.ui.top.name == "service_pin"
        (alarm,) = _eventually(lambda: _alarms(province), "the PIN_LOCKOUT alarm")
        assert alarm["severity"] == "warning" and alarm["context"]["failures"] == 3
        assert alarm["context"]["locked_until"] == pytest.approx(clock.time() + 30, abs=5)
    finally:
        app.close()

    # --- 2. restart: the lock holds -------------------------------------------------------
    app = _start(cfg, clock)
    try:
        screen = Screen(app)
        screen.ui.open_service()
        screen.enter(PIN)
        assert screen.ui.top.name == "service_pin"
        pin = app.controller.view().service.pin
        assert pin.failures == 3 and pin.locked_until is not None

        # --- 3. after the lock, one more wrong PIN: the delay doubled ---------------------
        clock.jump(31)
        screen.enter("999999")
        pin = app.controller.view().service.pin
        assert pin.failures == 4 and pin.locked_until is not None
        assert pin.locked_until - clock.monotonic() == pytest.approx(60, abs=3)
        assert any("1分" in r.text for r in screen.ui.texts)
        _eventually(lambda: len(_alarms(province)) == 2, "the second PIN_LOCKOUT alarm")
        assert [a["context"]["failures"] for a in _alarms(province)] == [3, 4]

        # --- 4. the right PIN after the lock: T0042 is in; the records name them -----------
        clock.jump(61)
        screen.enter(PIN)
        assert screen.ui.top.name == "service_menu"
        _eventually(
            lambda: app.controller.view().service.pin.failures == 0, "the count to start again"
        )
        screen.tap("slots:test_vend")
        slot = next(s.slot_no for s in app.controller.view().service.slots if s.product_id)
        screen.tap(f"check-{slot}")  # looks at the slot, drops nothing
        checked = _eventually(
            lambda: [r for r in _technician_records(province) if r["action"] == "check_slot_done"],
            "the slot check record",
        )
        assert checked[0]["slot"] == slot and checked[0]["technician"] == "T0042"
        screen.tap(f"vend-{slot}")  # drops an item: the service menu asks first
        screen.tap("confirm-yes")
        records = _eventually(
            lambda: [r for r in _technician_records(province) if r["action"] == "test_vend"],
            "the test vend record",
        )
        assert records[0]["technician"] == "T0042" and records[0]["slot"] == slot
        logins = [r for r in _technician_records(province) if r["action"] == "ServiceLogin"]
        assert [(r["ok"], r["technician"]) for r in logins if r["ok"]] == [(True, "T0042")]
        assert all(r["technician"] == "" for r in logins if not r["ok"])
    finally:
        app.close()


def test_field_config_refuses_the_demo_pin_at_start(kiosk_world: KioskWorld) -> None:
    cfg = _with_technicians(kiosk_world.config, ("T0042", DEMO_PIN_HASH))
    # a real province: a broker not on this machine (kiosk.config.is_field_config)
    raw = tomllib.loads(cfg.read_text(encoding="utf-8"))
    raw["sync"]["broker_url"] = "mqtts://broker.province.example:8883"
    cfg.write_text(tomli_w.dumps(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"service\.technicians\[1\]\.pin_hash"):
        load_config(cfg)
    child = run_kiosk(cfg)
    try:
        assert child.proc.wait(30) != 0, child.dump()
        _eventually(
            lambda: any("published demo PIN" in s for s in child.lines() + child.lines(err=True)),
            "the refusal",
            timeout=5,
        )
    finally:
        child.stop()
