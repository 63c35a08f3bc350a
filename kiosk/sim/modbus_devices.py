"""Simulated Modbus RTU devices: a locker lock board and a temperature/humidity sensor, served
by pymodbus's own serial server on one end of a socat pty pair, with named fault knobs.

Owns: the device models (`LockBoardModel`: a coil per lock, a discrete input per door, a
shopper who opens the door some time after the release and closes it later, or never;
`SensorModel`: input registers temperature x10 signed and humidity x10, a broken probe), the
faults on the wire (`WireFaults`: lost requests, lost or corrupted answers, a silent line) done
through pymodbus's `trace_packet` hook, the server thread, and `PtyPair` (socat).

Never: imports or imitates the kiosk's Modbus code (kiosk.hardware.modbus_*): the kiosk and
these devices share nothing but pymodbus and the register map in docs/boards/modbus.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

__all__ = [
    "LockBoardModel",
    "ModbusDevices",
    "ModbusSim",
    "PtyPair",
    "SensorModel",
    "WireFaults",
    "add_arguments",
    "socat_pair",
    "start_from_args",
    "start_socat",
]

FC_READ_COILS, FC_READ_DI, FC_READ_IR, FC_WRITE_COIL, FC_WRITE_COILS = 1, 2, 4, 5, 15
_BITS = 64  # coils and discrete inputs per simulated board (4 registers of 16 bits)


@dataclass
class WireFaults:
    """Faults on the device's side of the line, settable while running. Ratios are 0..1."""

    lose_requests: float = 0.0  # the request is corrupted on the way in: the device ignores it
    drop_replies: float = 0.0  # the device acts but its answer never arrives
    corrupt_replies: float = 0.0  # the answer arrives with a bad CRC
    silent: bool = False  # nothing answers (cable cut, device unpowered)
    seed: int = 1
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _hit(self, ratio: float, name: str) -> bool:
        hit = ratio > 0 and self._rng.random() < ratio
        if hit:
            self.counts[name] = self.counts.get(name, 0) + 1
        return hit

    def trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not data:
            return data
        if not sending:
            if self.silent or self._hit(self.lose_requests, "lost_requests"):
                return data[:-1] + bytes([data[-1] ^ 0xFF])  # bad CRC: not for anyone
            return data
        if self.silent or self._hit(self.drop_replies, "dropped_replies"):
            return b""
        if self._hit(self.corrupt_replies, "corrupted_replies"):
            return data[:-1] + bytes([data[-1] ^ 0x5A])
        return data


class LockBoardModel:
    """A lock-control board: coil n releases lock n (the board relocks by itself), discrete
    input n is door n (1 = open). After a release the simulated shopper opens the door after
    `open_after_s` (None: never) and closes it `close_after_s` later (None: never)."""

    def __init__(
        self,
        unit: int = 1,
        locks: int = 24,
        *,
        coil_base: int = 0,
        door_base: int = 0,
        open_after_s: float | None = 0.3,
        close_after_s: float | None = 2.0,  # longer than the kiosk's max_sample_gap_s
    ) -> None:
        self.unit, self.locks = unit, locks
        self.coil_base, self.door_base = coil_base, door_base
        self.open_after_s, self.close_after_s = open_after_s, close_after_s
        self._lock = threading.Lock()
        self._opened_at: dict[int, float] = {}  # lock -> when its door opened
        self._released_at: dict[int, float] = {}
        self._closed_doors: set[int] = set()
        self.releases: list[int] = []  # every release carried out (a physical log)

    def write_coil(self, coil: int, value: bool) -> None:
        n = coil - self.coil_base
        if not 0 <= n < self.locks:
            return
        with self._lock:
            now = time.monotonic()
            if not value:  # locked again: a door not opened by now stays shut
                t = self._released_at.get(n)
                if t is not None and (self.open_after_s is None or now < t + self.open_after_s):
                    del self._released_at[n]
                return
            if n in self._released_at and not self._finished(n, now):
                return  # released and not yet closed: a repeated write changes nothing
            self.releases.append(n)
            self._released_at[n] = now
            self._closed_doors.discard(n)

    def door_open(self, n: int) -> bool:
        with self._lock:
            return self._door_open(n, time.monotonic())

    def _door_open(self, n: int, now: float) -> bool:
        t = self._released_at.get(n)
        if t is None or self.open_after_s is None or now < t + self.open_after_s:
            return False
        closes = None if self.close_after_s is None else t + self.open_after_s + self.close_after_s
        return closes is None or now < closes

    def _finished(self, n: int, now: float) -> bool:
        t = self._released_at[n]
        if self.open_after_s is None or self.close_after_s is None:
            return False
        return now >= t + self.open_after_s + self.close_after_s

    def doors(self) -> list[bool]:
        now = time.monotonic()
        with self._lock:
            return [self._door_open(i - self.door_base, now) for i in range(_BITS)]

    def device(self) -> SimDevice:
        async def action(
            fc: int,
            _start: int,
            address: int,
            count: int,
            registers: list[int],
            values: list[int] | list[bool] | None,
        ) -> None:
            if fc in (FC_WRITE_COIL, FC_WRITE_COILS) and values is not None:
                for i, v in enumerate(values):
                    self.write_coil(address + i, bool(v))
            elif fc == FC_READ_DI:
                _pack(self.doors(), registers)
            return None

        return SimDevice(self.unit, simdata=_blocks(), action=action)


class SensorModel:
    """Input register `temperature_register` = °C x10 signed, the next one = %RH x10."""

    def __init__(
        self, unit: int = 10, celsius: float = 4.0, humidity: float = 55.0, register: int = 1
    ) -> None:
        self.unit, self.celsius, self.humidity, self.register = unit, celsius, humidity, register
        self.probe_failed = False

    def registers(self) -> tuple[int, int]:
        t = 0x7FFF if self.probe_failed else round(self.celsius * 10) & 0xFFFF
        return t, round(self.humidity * 10) & 0xFFFF

    def device(self) -> SimDevice:
        async def action(
            fc: int,
            _start: int,
            _address: int,
            _count: int,
            registers: list[int],
            _values: list[int] | list[bool] | None,
        ) -> None:
            if fc == FC_READ_IR:
                t, h = self.registers()
                registers[self.register], registers[self.register + 1] = t, h
            return None

        return SimDevice(self.unit, simdata=_blocks(), action=action)


def _blocks() -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
    return (
        [SimData(0, count=_BITS, values=False, datatype=DataType.BITS)],
        [SimData(0, count=_BITS, values=False, datatype=DataType.BITS)],
        [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)],
        [SimData(0, count=16, values=0, datatype=DataType.REGISTERS)],
    )


def _pack(bits: list[bool], registers: list[int]) -> None:
    """Bits LSB first into the 16-bit registers of a bit block (pymodbus's layout)."""
    for r in range(len(registers)):
        word = 0
        for b in range(16):
            i = r * 16 + b
            if i < len(bits) and bits[i]:
                word |= 1 << b
        registers[r] = word


class ModbusDevices:
    """pymodbus's serial server for `devices` on `port`, in a thread of its own."""

    def __init__(
        self,
        port: str,
        devices: list[LockBoardModel | SensorModel],
        *,
        baud: int = 9600,
        faults: WireFaults | None = None,
    ) -> None:
        self.port, self.baud, self.models = port, baud, devices
        self.faults = faults or WireFaults()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusSerialServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modbus-devices", daemon=True)

    def start(self, timeout: float = 10.0) -> ModbusDevices:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"modbus device server on {self.port} did not start")
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._server = ModbusSerialServer(
                [m.device() for m in self.models],
                port=self.port,
                baudrate=self.baud,
                trace_packet=self.faults.trace_packet,
            )
            self._ready.set()
            await self._server.serve_forever()

        with contextlib.suppress(Exception):
            asyncio.run(main())

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is not None and server is not None and not loop.is_closed():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(5)  # type: ignore[no-untyped-call]
        self._thread.join(5)


@dataclass
class PtyPair:
    """Two linked pseudo-terminals made by socat: the kiosk opens `kiosk_end`, the simulated
    devices `device_end`."""

    kiosk_end: str
    device_end: str
    process: subprocess.Popen[bytes]

    def close(self) -> None:
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


def start_socat(kiosk_end: Path, device_end: Path, timeout: float = 10.0) -> PtyPair:
    """Start socat linking two ptys behind these symlinks; wait until both exist. Refuses a
    path that exists and is not a symlink (never a real serial device)."""
    socat = shutil.which("socat")
    if socat is None:
        raise RuntimeError("socat is not installed (scripts/test.sh installs it)")
    for link in (kiosk_end, device_end):
        if link.exists() and not link.is_symlink():
            raise RuntimeError(f"{link} exists and is not a symlink: refusing to replace it")
    proc = subprocess.Popen(
        [socat, f"pty,raw,echo=0,link={kiosk_end}", f"pty,raw,echo=0,link={device_end}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    pair = PtyPair(str(kiosk_end), str(device_end), proc)
    deadline = time.monotonic() + timeout
    while not (os.path.exists(kiosk_end) and os.path.exists(device_end)):
        if proc.poll() is not None or time.monotonic() > deadline:
            pair.close()
            raise RuntimeError("socat did not create the pty pair")
        time.sleep(0.02)
    return pair


@contextlib.contextmanager
def socat_pair(directory: Path, timeout: float = 10.0) -> Iterator[PtyPair]:
    """`start_socat` with both links in `directory`, closed on leaving."""
    pair = start_socat(directory / "modbus-kiosk", directory / "modbus-device", timeout)
    try:
        yield pair
    finally:
        pair.close()


# --- `kiosk emulator --modbus-pty PATH`: the devices beside the board emulator ---------------


class ModbusSim:
    """Simulated lock boards and a sensor behind a pty symlink, for the demo and rehearsal."""

    def __init__(self, pair: PtyPair, devices: ModbusDevices) -> None:
        self.pair, self.devices = pair, devices

    def describe(self) -> str:
        parts = []
        for m in self.devices.models:
            if isinstance(m, LockBoardModel):
                parts.append(f"lock board unit {m.unit} ({m.locks} locks)")
            else:
                parts.append(f"sensor unit {m.unit} ({m.celsius:.1f} °C)")
        return f"modbus devices on {self.pair.kiosk_end} at {self.devices.baud} baud: " + ", ".join(
            parts
        )

    def stop(self) -> None:
        self.devices.stop()
        self.pair.close()


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Modbus devices (docs/boards/modbus.md)")
    g.add_argument("--modbus-pty", metavar="PATH", help="also serve Modbus devices behind PATH")
    g.add_argument("--modbus-baud", type=int, default=9600, help="Modbus line speed")
    g.add_argument(
        "--modbus-locks", type=int, default=0, metavar="N", help="N lock boards, units 1..N"
    )
    g.add_argument("--modbus-locks-per-board", type=int, default=24, metavar="N")
    g.add_argument(
        "--modbus-sensor", type=int, default=0, metavar="UNIT", help="a sensor at UNIT (0: none)"
    )
    g.add_argument("--modbus-celsius", type=float, default=4.0, help="the sensor's temperature")


def start_from_args(args: argparse.Namespace) -> ModbusSim | None:
    """The devices `add_arguments` describes, started; None without --modbus-pty."""
    path = getattr(args, "modbus_pty", None)
    if not path:
        return None
    models: list[LockBoardModel | SensorModel] = [
        LockBoardModel(unit=u, locks=args.modbus_locks_per_board)
        for u in range(1, args.modbus_locks + 1)
    ]
    if args.modbus_sensor:
        models.append(SensorModel(unit=args.modbus_sensor, celsius=args.modbus_celsius))
    if not models:
        raise ValueError("--modbus-pty needs --modbus-locks N or --modbus-sensor UNIT")
    kiosk_end = Path(path)
    pair = start_socat(kiosk_end, kiosk_end.with_name(kiosk_end.name + "-device"))
    try:
        devices = ModbusDevices(pair.device_end, models, baud=args.modbus_baud).start()
    except BaseException:
        pair.close()
        raise
    return ModbusSim(pair, devices)
