"""The temperature/humidity sensor over Modbus RTU: the kiosk's pymodbus client against
pymodbus's own serial server over a real socat pty pair, with lost and corrupted frames."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.hardware.modbus_bus import ModbusSilent
from kiosk.hardware.modbus_sensor import ModbusTemperatureSensor, SensorMap, SensorReading
from kiosk.sim.modbus_devices import SensorModel, WireFaults
from tests.support.modbus import modbus_line


def test_readings_signed_and_scaled(tmp_path: Path) -> None:
    model = SensorModel(unit=10, celsius=4.3, humidity=61.5)
    with modbus_line(tmp_path, [model]) as line:
        sensor = ModbusTemperatureSensor(line.bus, SensorMap(unit=10))
        assert sensor.read() == SensorReading(4.3, 61.5)
        model.celsius = -12.7  # a freezer: two's complement
        assert sensor.read() == SensorReading(-12.7, 61.5)
        model.probe_failed = True  # the sensor says its probe is gone
        assert sensor.read().celsius is None
        assert line.bus.online


def test_lost_and_corrupted_frames_are_retried(tmp_path: Path) -> None:
    faults = WireFaults(lose_requests=0.1, drop_replies=0.1, corrupt_replies=0.1, seed=7)
    model = SensorModel(unit=10, celsius=5.5)
    kinds = {"lost_requests", "dropped_replies", "corrupted_replies"}
    with modbus_line(tmp_path, [model], faults=faults, retries=8) as line:
        sensor = ModbusTemperatureSensor(line.bus, SensorMap(unit=10))
        readings = []
        while len(readings) < 200 and not kinds <= set(line.faults.counts):
            readings.append(sensor.read())  # until every kind of fault was met at least once
        assert kinds <= set(line.faults.counts), line.faults.counts
        assert all(r == SensorReading(5.5, 55.0) for r in readings)


def test_silent_sensor_raises_and_comes_back(tmp_path: Path) -> None:
    model = SensorModel(unit=10, celsius=3.0)
    with modbus_line(tmp_path, [model], timeout_s=0.1, retries=1) as line:
        sensor = ModbusTemperatureSensor(line.bus, SensorMap(unit=10))
        states: list[bool] = []
        line.bus.add_state_listener(lambda online, _r: states.append(online))
        assert sensor.read().celsius == 3.0
        line.faults.silent = True
        with pytest.raises(ModbusSilent):
            sensor.read()
        assert not line.bus.online
        line.faults.silent = False
        assert sensor.read().celsius == 3.0
        assert states == [True, False, True]
        assert line.bus.counters()["failures"] >= 1


def test_kiosk_emulator_serves_modbus_devices(tmp_path: Path) -> None:
    """`kiosk emulator --modbus-pty PATH ...` starts a lock board and a sensor beside the board
    emulator; the kiosk's Modbus code reads them over the pty."""
    import sys

    from kiosk.hardware.modbus_bus import BusSettings, ModbusBus
    from kiosk.hardware.modbus_locks import LockMap, ModbusLockBoard
    from kiosk.hardware.protocol import Outcome
    from tests.support.child import Child
    from tests.support.paths import child_env

    link = tmp_path / "modbus"
    argv = [sys.executable, "-m", "kiosk.cli", "emulator", "--pty", str(tmp_path / "board")]
    argv += ["--modbus-pty", str(link), "--modbus-locks", "1", "--modbus-sensor", "10"]
    argv += ["--modbus-celsius", "-3.5", "--modbus-baud", "19200"]
    child = Child(argv, child_env(), tmp_path)
    try:
        child.wait_line(lambda s: s.startswith("modbus devices on"), 30)
        bus = ModbusBus(BusSettings(str(link), 19200, timeout_s=0.3, retries=3))
        try:
            sensor = ModbusTemperatureSensor(bus, SensorMap(unit=10))
            assert sensor.read() == SensorReading(-3.5, 55.0)
            board = ModbusLockBoard(bus, 0, LockMap(unit=1, locks=24, door_poll_s=0.05))
            assert board.unlock(4, 1, timeout=20).outcome is Outcome.DOOR_OPENED_AND_CLOSED
        finally:
            bus.close()
    finally:
        child.stop()
    assert not link.exists()  # socat removed its link
