"""A Modbus RS-485 line for tests: a socat pty pair, pymodbus's serial server with simulated
devices on one end (kiosk.sim.modbus_devices), the kiosk's `ModbusBus` on the other."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kiosk.hardware.modbus_bus import BusSettings, ModbusBus
from kiosk.sim.modbus_devices import (
    LockBoardModel,
    ModbusDevices,
    PtyPair,
    SensorModel,
    WireFaults,
    socat_pair,
)

BAUD = 19200


@dataclass
class ModbusLine:
    pair: PtyPair
    devices: ModbusDevices
    bus: ModbusBus

    @property
    def faults(self) -> WireFaults:
        return self.devices.faults


@contextlib.contextmanager
def modbus_line(
    tmp: Path,
    models: list[LockBoardModel | SensorModel],
    *,
    faults: WireFaults | None = None,
    timeout_s: float = 0.25,
    retries: int = 3,
) -> Iterator[ModbusLine]:
    with socat_pair(tmp) as pair:
        devices = ModbusDevices(pair.device_end, models, baud=BAUD, faults=faults).start()
        bus = ModbusBus(BusSettings(pair.kiosk_end, BAUD, timeout_s=timeout_s, retries=retries))
        bus.start()
        try:
            yield ModbusLine(pair, devices, bus)
        finally:
            bus.close()
            devices.stop()
