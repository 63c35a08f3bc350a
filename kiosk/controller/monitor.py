"""Monitoring: the board status poll (its own thread), the temperature sensor poll (its own
thread, when the cabinet has a sensor on the Modbus line) and the store's upkeep (on the
tick): free disk space and folding the WAL back when idle.

Owns: the free-space measurement (`free_mb`, `disk_low`) and when to checkpoint.
Never: decides out of service (it only gathers facts for `kiosk.core.service`); checkpoints
while an order or a test vend is running.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable

from kiosk import config as _config
from kiosk.controller.inbox import Health, SensorPoll
from kiosk.controller.persist import STORE_ERRORS
from kiosk.hardware.board import BoardDriver, BoardError
from kiosk.hardware.modbus_bus import ModbusError
from kiosk.hardware.modbus_sensor import TemperatureSensor
from kiosk.log import log_event
from kiosk.store import Store

log = logging.getLogger("kiosk.controller")

WAL_HEADROOM_BYTES = 4 * 1024 * 1024  # SQLite's automatic checkpoint (1000 pages of 4 KiB)
CHECKPOINT_EVERY_S = 60.0  # fold the WAL back and truncate it at most this often, when idle
DISK_CHECK_EVERY_S = 5.0


def run_board_monitor(
    board: BoardDriver, post: Callable[[object], None], stop: threading.Event, every_s: float
) -> None:
    """The monitor thread: the board's status every `every_s`, as `Health` into the inbox."""
    while not stop.is_set():
        try:
            st = board.status()
            post(Health(True, st, ""))
        except BoardError as e:
            post(Health(False, None, str(e)))
        except Exception:
            log.exception("monitor.failed")
        stop.wait(every_s)


def run_sensor_monitor(
    sensor: TemperatureSensor,
    post: Callable[[object], None],
    stop: threading.Event,
    every_s: float,
) -> None:
    """The sensor thread: one reading every `every_s` as `SensorPoll` into the inbox (an error
    when it does not answer); closes the sensor when stopped."""
    try:
        while not stop.is_set():
            try:
                r = sensor.read()
                post(SensorPoll(r.celsius, r.humidity_pct))
            except ModbusError as e:
                post(SensorPoll(None, None, str(e)))
            except Exception:
                log.exception("monitor.sensor_failed")
            stop.wait(every_s)
    finally:
        sensor.close()


class Upkeep:
    def __init__(self, store: Store, config: _config.KioskConfig) -> None:
        self.store = store
        self.min_free_mb = config.store.min_free_mb
        self.free_mb: float | None = None
        self.disk_low = False
        self._next_disk_check = 0.0
        self._next_checkpoint = 0.0
        self.measure_disk()  # before the first sale, not at the first tick

    def measure_disk(self) -> None:
        """Free space in the data directory, less what the WAL may still grow by before its
        automatic checkpoint; logs when it crosses `store.min_free_mb` either way."""
        try:
            free = shutil.disk_usage(self.store.data_dir).free
            free -= max(0, WAL_HEADROOM_BYTES - self.store.wal_bytes())
            self.free_mb = free / 1e6
        except OSError:
            self.free_mb = None
        low = self.free_mb is not None and self.free_mb < self.min_free_mb
        if low != self.disk_low:
            self.disk_low = low
            log_event(
                log,
                "store.disk_low" if low else "store.disk_ok",
                logging.ERROR if low else logging.INFO,
                free_mb=None if self.free_mb is None else round(self.free_mb, 1),
                min_free_mb=self.min_free_mb,
                data_dir=str(self.store.data_dir),
            )

    def disk_due(self, mono: float) -> bool:
        """Time for the periodic disk measurement (and the settings re-read with it)?"""
        if mono < self._next_disk_check:
            return False
        self._next_disk_check = mono + DISK_CHECK_EVERY_S
        self.measure_disk()
        return True

    def checkpoint_when_idle(self, mono: float, idle: bool) -> None:
        if mono < self._next_checkpoint or not idle:
            return
        self._next_checkpoint = mono + CHECKPOINT_EVERY_S
        try:
            self.store.checkpoint()
        except STORE_ERRORS as e:
            log_event(log, "store.checkpoint_failed", logging.WARNING, error=str(e))
