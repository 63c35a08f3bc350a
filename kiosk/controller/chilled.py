"""Chilled goods in the shell: feeds readings and ticks to `kiosk.core.chilled`, keeps the
stopped limits on disk and raises the TEMPERATURE_HIGH / TEMPERATURE_OK alarms.

Owns: the settings key `chilled.state` ({"blocked": [limits], "alarms": n}: the limits stopped,
kept across a restart so that a warm cabinet does not sell again just because the kiosk
restarted, and the alarm counter that numbers the alarm event ids), the alarm bodies, the
latest reading for the view and telemetry. Runs on the controller thread only.
Never: decides whether a product is too warm (the core does) or reads the sensor (the monitor
thread does, kiosk.controller.monitor.run_sensor_monitor).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from kiosk import config as _config
from kiosk.clock import Clock
from kiosk.controller.persist import STORE_ERRORS, Persistence
from kiosk.core import chilled
from kiosk.core.catalog import Catalog
from kiosk.core.planogram import Planogram
from kiosk.log import log_event
from kiosk.sync import messages
from kiosk.sync.outbox import Priority

__all__ = ["STATE_KEY", "ChilledWatch"]

log = logging.getLogger("kiosk.controller")

STATE_KEY = "chilled.state"
HIGH, OK = "TEMPERATURE_HIGH", "TEMPERATURE_OK"


class ChilledWatch:
    def __init__(
        self,
        persist: Persistence,
        clock: Clock,
        cfg: _config.ChilledConfig,
        sensor: str,
    ) -> None:
        self.persist, self.clock, self.sensor = persist, clock, sensor
        self.rules = chilled.ChilledRules(
            too_warm_for_s=float(cfg.too_warm_for_s),
            back_for_s=float(cfg.back_for_s),
            hysteresis_c=cfg.hysteresis_c,
            silent_after_s=float(cfg.sensor_silent_after_s),
        )
        blocked, self._alarms = self._load()
        self.state = chilled.new_state(clock.monotonic(), blocked)
        self.humidity_pct: float | None = None
        self.error = ""

    # --- inputs (controller thread) -------------------------------------------------------

    def reading(
        self, celsius: float | None, humidity_pct: float | None, error: str, catalog: Catalog
    ) -> None:
        """A sensor poll: a reading (celsius None: the probe failed) or an error (no answer:
        nothing is fed, so the reading ages and the silence rule applies)."""
        self.error = error
        if error:
            self.humidity_pct = None
            self.tick(catalog)
            return
        self.humidity_pct = humidity_pct
        self._step(catalog, chilled.Reading(celsius, self.clock.monotonic()))

    def tick(self, catalog: Catalog) -> None:
        self._step(catalog, None)

    # --- what the rest of the shell reads -------------------------------------------------

    def blocked(self, catalog: Catalog) -> frozenset[str]:
        return chilled.blocked_products(catalog, self.state)

    def blocked_slots(self, catalog: Catalog, planogram: Planogram) -> frozenset[int]:
        products = self.blocked(catalog)
        if not products:
            return frozenset()
        return frozenset(s.slot_no for s in planogram if s.product_id in products)

    def celsius(self) -> float | None:
        return chilled.current_celsius(self.state, self.clock.monotonic(), self.rules)

    # --- internals ------------------------------------------------------------------------

    def _step(self, catalog: Catalog, reading: chilled.Reading | None) -> None:
        limits = chilled.chilled_limits(catalog)
        new, transitions = chilled.step(
            self.state, self.clock.monotonic(), limits, self.rules, reading
        )
        if transitions or chilled.blocked_limits(new) != chilled.blocked_limits(self.state):
            self._save(new, transitions)  # on disk before products start or stop selling
        self.state = new

    def _load(self) -> tuple[list[float], int]:
        try:
            raw = self.persist.store.settings.get_json(STATE_KEY, {})
        except STORE_ERRORS as e:
            log_event(log, "chilled.state_unreadable", logging.WARNING, error=str(e))
            return [], 0
        if not isinstance(raw, dict):
            return [], 0
        blocked = [float(x) for x in raw.get("blocked", []) if isinstance(x, int | float)]
        alarms = raw.get("alarms", 0)
        return blocked, alarms if isinstance(alarms, int) else 0

    def _save(self, new: chilled.ChilledState, transitions: Iterable[chilled.Transition]) -> None:
        store, sink = self.persist.store, self.persist.sink
        n = self._alarms
        bodies: list[dict[str, Any]] = []
        for t in transitions:
            bodies.append(self._alarm_body(t))
            log_event(
                log,
                "alarm",
                logging.WARNING if isinstance(t, chilled.TooWarm) else logging.INFO,
                kind=bodies[-1]["code"],
                limit=t.limit,
                celsius=t.celsius,
                sensor=self.sensor,
            )
        try:
            with store.transaction() as conn:
                for body in bodies:
                    n += 1
                    if sink is not None:
                        sink.append(
                            "alarm",
                            body,
                            Priority.HIGH,
                            event_id=f"alarm-{self.persist.kiosk_id}-{store.epoch}-temperature-{n}",
                            conn=conn,
                        )
                state = {"blocked": sorted(chilled.blocked_limits(new)), "alarms": n}
                store.settings.set_json(STATE_KEY, state)
        except STORE_ERRORS as e:
            self.persist.failed(e, "chilled")
            return
        self._alarms = n
        self.persist.committed()

    def _alarm_body(self, t: chilled.Transition) -> dict[str, Any]:
        where = f"sensor {self.sensor}"
        if isinstance(t, chilled.TooWarm):
            seen = "no reading" if t.celsius is None else f"{t.celsius:.1f} °C"
            detail = (
                f"{where}: {seen} above {t.limit:.1f} °C for {self.rules.too_warm_for_s:.0f} s: "
                "chilled products with this limit stopped selling"
            )
            return messages.alarm(
                HIGH, detail, "warning", sensor=self.sensor, celsius=t.celsius, limit=t.limit
            )
        detail = (
            f"{where}: {t.celsius:.1f} °C, back in range of {t.limit:.1f} °C for "
            f"{self.rules.back_for_s:.0f} s: chilled products with this limit sell again"
        )
        return messages.alarm(
            OK, detail, "info", sensor=self.sensor, celsius=t.celsius, limit=t.limit
        )
