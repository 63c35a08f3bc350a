"""Board emulator transports (emu://, TCP, pty), unplug/replug, wire pacing, control channel, CLI.

Real threads and real time, but fast: time_scale 0.01, and every wait is on a condition with a
generous timeout, never a bare sleep.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from kiosk.hardware.protocol import (
    Ack,
    BoardReset,
    FrameDecoder,
    Identify,
    IdentifyReply,
    Message,
    Outcome,
    Ping,
    Poll,
    TxReply,
    VendRequest,
    VendResult,
    decode_message,
    encode,
)
from kiosk.sim import cli_emulator
from kiosk.sim.board_emulator import BoardModel, EmulatedBoard, Faults
from kiosk.sim.emulator_transports import (
    Emulator,
    InProcessTransport,
    PtyTransport,
    TcpTransport,
    Transport,
    send_control,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory (UNIX socket paths are limited to ~107 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="kemu-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


class Client:
    """The host side over a pyserial port, as the kiosk's link opens it."""

    def __init__(self, url: str) -> None:
        self.port = serial.serial_for_url(url, baudrate=115200, timeout=0.05)
        self.decoder = FrameDecoder()
        self.seq = 0

    def read_message(self, timeout: float = 20.0) -> Message:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = self.decoder.next_frame()
            if frame is not None:
                return decode_message(frame)
            self.decoder.feed(self.port.read(64))
        raise TimeoutError("no frame from the emulator")

    def ask(self, msg: Message) -> Message:
        self.seq = (self.seq + 1) & 0xFF
        self.port.write(encode(0, self.seq, msg))
        return self.read_message()

    def close(self) -> None:
        self.port.close()


def start(transport: Transport, **kw: object) -> Emulator:
    board = EmulatedBoard(BoardModel.spiral(), time_scale=0.01, faults=Faults(seed=11))
    return Emulator(board, transport, **kw).start()  # type: ignore[arg-type]


_names = iter(range(10_000))


def transports(kind: str, d: Path) -> tuple[Transport, Callable[[Emulator], str]]:
    if kind == "emu":
        name = f"board-{next(_names)}"
        return InProcessTransport(name), lambda emu: f"emu://{name}"
    if kind == "tcp":
        return TcpTransport(0), lambda emu: emu.describe()
    path = d / "kiosk-board"
    return PtyTransport(path), lambda emu: str(path)


@pytest.mark.parametrize("kind", ["emu", "tcp", "pty"])
def test_identify_and_vend_over_each_transport(kind: str, short_dir: Path) -> None:
    transport, url = transports(kind, short_dir)
    emu = start(transport)
    try:
        client = Client(url(emu))
        reply = client.ask(Identify(1, False))
        assert isinstance(reply, IdentifyReply) and reply.slot_count == 60
        assert client.ask(VendRequest(12, 500)) == TxReply(500, 12, Outcome.ACCEPTED)
        assert emu.wait_for(lambda: emu.board.busy_tx == 0)
        assert isinstance(client.ask(Poll()), BoardReset)
        assert client.ask(Poll()) == VendResult(500, 12, Outcome.DELIVERED)
        assert client.ask(Poll()) == Ack()
        runs = emu.board.log.runs(500)
        assert len(runs) == 1 and runs[0]["slot"] == 12
        client.close()
    finally:
        emu.stop()
    if kind == "pty":
        assert not (short_dir / "kiosk-board").exists()  # symlink cleaned up


@pytest.mark.parametrize("kind", ["emu", "tcp", "pty"])
def test_unplug_breaks_the_client_and_replug_brings_the_port_back(
    kind: str, short_dir: Path
) -> None:
    transport, url = transports(kind, short_dir)
    emu = start(transport)
    try:
        client = Client(url(emu))
        assert isinstance(client.ask(Identify(1, False)), IdentifyReply)
        emu.unplug(0.3)
        if kind == "pty":
            assert not (short_dir / "kiosk-board").exists()
        with pytest.raises((serial.SerialException, OSError)):
            for _ in range(50):  # a write may still land in a buffer; reads must fail soon
                client.port.write(encode(0, 9, Ping()))
                client.port.read(1)
        client.port.close()
        assert emu.wait_for(lambda: not emu.board.faults.unplugged, timeout=5)
        if kind == "pty":
            assert (short_dir / "kiosk-board").is_symlink()
        client = Client(url(emu))
        assert isinstance(client.ask(Identify(1, False)), IdentifyReply)
        client.close()
    finally:
        emu.stop()


def test_bytes_are_paced_at_the_baud_rate() -> None:
    emu = start(InProcessTransport(f"slow-{next(_names)}"), baud=9600)
    try:
        client = Client(f"emu://{emu.transport.describe()[6:]}")
        t0 = time.monotonic()
        reply = client.ask(Identify(1, False))
        elapsed = time.monotonic() - t0
        assert isinstance(reply, IdentifyReply)
        request_bytes, reply_bytes = 9, 7 + len(reply.payload())
        assert elapsed >= (request_bytes + reply_bytes) * 10 / 9600 * 0.95
        client.close()
    finally:
        emu.stop()


def test_push_events_reach_the_client() -> None:
    emu = start(InProcessTransport(f"push-{next(_names)}"))
    try:
        client = Client(f"emu://{emu.transport.describe()[6:]}")
        assert isinstance(client.ask(Identify(1, True)), IdentifyReply)
        assert isinstance(client.read_message(), BoardReset)
        client.close()
    finally:
        emu.stop()


@pytest.mark.parametrize("where", ["unix", "tcp"])
def test_control_channel_commands(where: str, short_dir: Path) -> None:
    control = str(short_dir / "ctl.sock") if where == "unix" else "0"
    name = f"ctl-{next(_names)}"
    emu = start(InProcessTransport(name), control=control)
    try:
        assert emu.control is not None
        address = emu.control.address

        def ctl(cmd: str) -> str:
            return send_control(address, cmd)

        assert ctl("jam 12") == "ok"
        assert ctl("blind 5") == "ok"
        assert ctl("stock 7 0") == "ok"
        assert ctl("drop 0.0") == "ok"
        assert ctl("set bit_flip_ratio=0") == "ok"
        assert ctl("motor 9 missing") == "ok"
        assert ctl("door open") == "ok"
        assert ctl("door close") == "ok"
        assert ctl("bogus").startswith("error")
        assert ctl("stock x").startswith("error")
        assert ctl("temp 9").startswith("error")  # not a chilled cabinet
        status = json.loads(ctl("status")[3:])
        assert status["faults"]["jammed"] == [12] and status["faults"]["blind_drop_sensor"] == [5]
        assert status["faults"]["missing_motor"] == [9] and status["stock"][7] == 0

        client = Client(f"emu://{name}")
        client.ask(Identify(1, False))
        assert client.ask(VendRequest(7, 600)) == TxReply(600, 7, Outcome.SLOT_EMPTY)
        assert client.ask(VendRequest(12, 601)) == TxReply(601, 12, Outcome.ACCEPTED)
        assert emu.wait_for(lambda: emu.board.outcome(601) == Outcome.JAMMED)
        assert ctl("unjam 12") == "ok"
        log = json.loads(ctl("log 5")[3:])
        assert log[-1]["tx"] == 601 and log[-1]["result"] == "JAMMED"

        assert ctl("reset keep") == "ok"
        assert emu.wait_for(lambda: emu.board.snapshot()["stats"]["resets"] == 1)
        assert ctl("unplug 0.2") == "ok"
        assert emu.wait_for(lambda: not emu.board.faults.unplugged)
        client.close()
    finally:
        emu.stop()
    if where == "unix":
        assert not (short_dir / "ctl.sock").exists()


def test_cli_register_parses_every_option() -> None:
    parser = argparse.ArgumentParser(prog="kiosk")
    sub = parser.add_subparsers(dest="command")
    cli_emulator.register(sub, argparse.ArgumentParser(add_help=False))
    args = parser.parse_args(
        [
            "emulator",
            "--tcp",
            "0",
            "--cabinet",
            "locker",
            "--rows",
            "2",
            "--cols",
            "3",
            "--time-scale",
            "0.01",
            "--seed",
            "4",
            "--fault",
            "jammed=1,2",
            "--fault",
            "door_left_open=on",
        ]
    )
    assert args.func is cli_emulator.cmd_emulator
    emu = cli_emulator.build_emulator(args)
    assert emu.board.model.slot_count == 6
    assert emu.board.faults.jammed == {1, 2} and emu.board.faults.door_left_open
    assert isinstance(emu.transport, TcpTransport)
    ctl = parser.parse_args(["emulator", "ctl", "--control", "/tmp/x.ctl", "jam", "3"])
    assert ctl.func is cli_emulator.cmd_emulator_ctl and ctl.words == ["jam", "3"]


def test_cli_runs_as_its_own_process(short_dir: Path) -> None:
    pty_path, ctl_path = short_dir / "board", short_dir / "board.ctl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kiosk.sim.cli_emulator",
            "--pty",
            str(pty_path),
            "--control",
            str(ctl_path),
            "--time-scale",
            "0.01",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on" in line and str(pty_path) in line
        client = Client(str(pty_path))
        assert isinstance(client.ask(Identify(1, False)), IdentifyReply)
        client.close()
        ns = argparse.Namespace(ctl_control=str(ctl_path), words=["jam", "4"])
        assert cli_emulator.cmd_emulator_ctl(ns) == 0
        assert send_control(str(ctl_path), "faults").startswith('ok {"drop_byte_ratio"')
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert not pty_path.exists() and not ctl_path.exists()
