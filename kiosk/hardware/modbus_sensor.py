"""A temperature/humidity sensor on the Modbus line (input registers, configurable scale).

Owns: the sensor's register map (`SensorMap`: which input registers, signed or not, the scale,
the raw values a sensor uses to say its probe failed) and turning registers into a reading.
Must never: decide whether goods are too warm (kiosk.core.chilled does) or poll on its own
(the controller's monitor thread calls `read` every `[modbus] sensor_every_s`).

The common RS-485 sensors (SHT20/SHT30 based, "XY-MD02" style) answer function 0x04 with
input register 1 = temperature x10 (signed) and register 2 = relative humidity x10: the
defaults. docs/boards/modbus.md has the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from kiosk.hardware.modbus_bus import ModbusBus, ModbusError

__all__ = [
    "FAILED_RAW",
    "ModbusTemperatureSensor",
    "SensorMap",
    "SensorReading",
    "TemperatureSensor",
]

#: Raw register values sensors send when the probe is missing or broken (signed 0x7FFF, 0x8000).
FAILED_RAW = frozenset({0x7FFF, 0x8000})


@dataclass(frozen=True, slots=True)
class SensorMap:
    unit: int
    temperature_register: int = 1
    humidity_register: int | None = 2  # None: no humidity
    temperature_scale: float = 0.1
    humidity_scale: float = 0.1
    signed: bool = True  # temperature is two's complement (below 0 °C)


@dataclass(frozen=True, slots=True)
class SensorReading:
    celsius: float | None  # None: the sensor answered that its probe failed
    humidity_pct: float | None


class TemperatureSensor(Protocol):
    """What the controller's monitor needs of a cabinet sensor."""

    name: str

    def read(self) -> SensorReading:
        """One reading now; raises kiosk.hardware.modbus_bus.ModbusError without an answer."""
        ...

    def close(self) -> None: ...


class ModbusTemperatureSensor:
    """`read()` asks the sensor once; raises ModbusError when it cannot be read."""

    def __init__(self, bus: ModbusBus, sensor_map: SensorMap, *, owns_bus: bool = False) -> None:
        self.bus = bus
        self.map = sensor_map
        self._owns_bus = owns_bus
        self.name = f"modbus:{sensor_map.unit}"

    def read(self) -> SensorReading:
        m = self.map
        regs = [m.temperature_register]
        if m.humidity_register is not None:
            regs.append(m.humidity_register)
        lo, hi = min(regs), max(regs)
        if hi - lo < 8:  # one request for both
            block = self.bus.read_input_registers(m.unit, lo, hi - lo + 1)
            values = {r: block[r - lo] for r in regs}
        else:
            values = {r: self.bus.read_input_registers(m.unit, r, 1)[0] for r in regs}
        if len(values) != len(regs):
            raise ModbusError(m.unit, "short answer")
        return SensorReading(
            _scaled(values[m.temperature_register], m.temperature_scale, m.signed),
            None
            if m.humidity_register is None
            else _scaled(values[m.humidity_register], m.humidity_scale, False),
        )

    def close(self) -> None:
        if self._owns_bus:
            self.bus.close()


def _scaled(raw: int, scale: float, signed: bool) -> float | None:
    raw &= 0xFFFF
    if raw in FAILED_RAW:
        return None
    value = raw - 0x10000 if signed and raw >= 0x8000 else raw
    return round(value * scale, 3)
