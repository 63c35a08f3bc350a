"""One Modbus RTU line (RS-485) shared by the cabinet's lock boards and sensors, over pymodbus.

Owns: the pymodbus serial client of one port (framing, CRC, timeouts and retries are
pymodbus's: this module never builds a frame), one request at a time on the line (RS-485 is
half duplex; lock boards and a sensor share it), reconnecting after the port went away, whether
the line answers (`online`, state listeners, as `SerialLink` does for our protocol) and the
counters shown in telemetry.

Must never: know what a lock, a door or a temperature is (kiosk.hardware.modbus_locks and
kiosk.hardware.modbus_sensor do); retry beyond pymodbus's bounded `retries` (a caller that
must not repeat an action decides itself).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ModbusException

from kiosk.log import log_event

__all__ = [
    "BusSettings",
    "ModbusBus",
    "ModbusError",
    "ModbusRefused",
    "ModbusSilent",
]

log = logging.getLogger("kiosk.hardware.modbus")
# pymodbus logs every lost answer as an ERROR with a multi-line dump of the last frames; the
# kiosk logs one line per event (kiosk.log) and says itself when the line goes offline and back
# (`modbus.offline` / `modbus.online`, with the reason) and counts failures for telemetry.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class ModbusError(Exception):
    """A Modbus request did not give an answer that can be used."""

    def __init__(self, unit: int, message: str) -> None:
        super().__init__(f"modbus unit {unit}: {message}")
        self.unit = unit


class ModbusSilent(ModbusError):
    """No valid answer after every retry (no device, wiring, noise) or the port is gone. For a
    write, the device may or may not have carried it out."""


class ModbusRefused(ModbusError):
    """The device answered with a Modbus exception (for example an illegal address: the
    register map in the config does not fit the device). Nothing was carried out."""


@dataclass(frozen=True, slots=True)
class BusSettings:
    port: str
    baud: int = 9600
    parity: str = "N"  # N | E | O
    stopbits: int = 1
    timeout_s: float = 0.3  # per try
    retries: int = 2  # extra tries after the first: a request takes at most (1+retries)*timeout


class ModbusBus:
    """See the module docstring. Thread-safe; `start` and `close` are idempotent."""

    def __init__(self, settings: BusSettings, watch_units: Iterable[int] | None = None) -> None:
        """`watch_units`: the units whose answers (or silence) make the line online (offline);
        None: every unit. A lock cabinet watches its lock boards only, so a silent sensor on
        the same line does not take the cabinet offline."""
        self.settings = settings
        self._watch = None if watch_units is None else frozenset(watch_units)
        self._lock = threading.Lock()
        self._client = ModbusSerialClient(
            settings.port,
            baudrate=settings.baud,
            parity=settings.parity,
            stopbits=settings.stopbits,
            timeout=settings.timeout_s,
            retries=settings.retries,
            reconnect_delay=0,  # we reconnect on the next request, not in the background
        )
        self._closed = False
        self._online = False
        self.last_error = ""
        self._listeners: list[Callable[[bool, str], None]] = []
        self._counts = {"requests": 0, "failures": 0, "refusals": 0, "reconnects": 0}

    # --- the link as the composition root sees it (kiosk.hardware.board: start/close/online)

    def start(self) -> None:
        with self._lock:
            self._closed = False
            self._connect()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            with contextlib.suppress(Exception):
                self._client.close()  # type: ignore[no-untyped-call]
        self._set_online(False, "closed")

    @property
    def online(self) -> bool:
        return self._online

    @property
    def closed(self) -> bool:
        return self._closed

    def add_state_listener(self, fn: Callable[[bool, str], None]) -> None:
        self._listeners.append(fn)

    def counters(self) -> dict[str, int]:
        return dict(self._counts)

    # --- requests -----------------------------------------------------------------------

    def read_input_registers(self, unit: int, address: int, count: int) -> list[int]:
        rr = self._call(unit, "read_input_registers", address, count=count)
        return [int(r) for r in rr.registers[:count]]

    def read_discrete_inputs(self, unit: int, address: int, count: int) -> list[bool]:
        rr = self._call(unit, "read_discrete_inputs", address, count=count)
        return [bool(b) for b in rr.bits[:count]]

    def read_coils(self, unit: int, address: int, count: int) -> list[bool]:
        rr = self._call(unit, "read_coils", address, count=count)
        return [bool(b) for b in rr.bits[:count]]

    def write_coil(self, unit: int, address: int, value: bool) -> None:
        """Write one coil. A repeated write of the same value is harmless, which is why
        pymodbus may retry it after a lost answer."""
        self._call(unit, "write_coil", address, value)

    def _call(self, unit: int, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._closed:
                raise ModbusSilent(unit, "the bus is closed")
            self._counts["requests"] += 1
            if not self._client.connected and not self._connect():
                self._counts["failures"] += 1
                raise ModbusSilent(unit, f"cannot open {self.settings.port}: {self.last_error}")
            try:
                rr = getattr(self._client, name)(*args, device_id=unit, **kwargs)
            except ModbusException as e:
                self._counts["failures"] += 1
                self.last_error = str(e)
                silent = True
            else:
                silent = False
        watched = self._watch is None or unit in self._watch
        if silent:
            if watched:
                self._set_online(False, self.last_error)
            raise ModbusSilent(unit, f"{name} got no valid answer: {self.last_error}")
        if watched:
            self._set_online(True, "answered")
        if rr.isError():
            self._counts["refusals"] += 1
            raise ModbusRefused(unit, f"{name} refused: {rr}")
        return rr

    def _connect(self) -> bool:
        try:
            ok = bool(self._client.connect())
        except Exception as e:  # pyserial raises several kinds
            ok = False
            self.last_error = str(e)
        else:
            if not ok:
                self.last_error = "port cannot be opened"
        if ok:
            self._counts["reconnects"] += 1
        return ok

    def _set_online(self, online: bool, reason: str) -> None:
        if online == self._online:
            return
        self._online = online
        log_event(
            log,
            "modbus.online" if online else "modbus.offline",
            logging.INFO if online else logging.WARNING,
            port=self.settings.port,
            reason=reason,
        )
        for fn in list(self._listeners):
            try:
                fn(online, reason)
            except Exception:
                log.exception("modbus.listener_failed")
