"""Hardware-in-the-loop harness (used by tests/hil/conftest.py and tests/hil/): the board
emulator in its own process behind a real pty, and the kiosk's real ``SerialLink`` +
``SerialBoard`` opening that pty through real pyserial.

Owns: starting/stopping `python -m kiosk.cli emulator` processes, the control channel helper,
the one-byte-at-a-time pty relay, and the ``wire`` parameter (clean / lossy / bytewise / delayed)
that every end-to-end test in tests/hil/ runs over (bellows style: one test, many bad wires).
Must never: reach into the emulator process other than through its control channel, its physical
log file and its pty (it is a separate process on purpose), or fake anything on the kiosk side.

What each wire exercises (honestly):

* ``clean``: emulator pty, no faults. Bytes arrive in ~1 ms chunks paced at 115200 baud.
* ``lossy``: the emulator's own fault knobs ``drop_byte_ratio=0.05`` and ``bit_flip_ratio=0.01``,
  applied by the emulator to every byte in both directions (host->board before its decoder,
  board->host after encoding). Exercises CRC rejection, resync, retransmission, the duplicate
  cache and OUTCOME queries.
* ``bytewise``: a relay thread in the test process sits between two ptys and forwards every byte
  as its own ``write()`` with a 0.2 ms pause, both ways, so the link's ``read()`` and the
  emulator's decoder mostly see one byte per call. It is a real pty on both sides, but the pause
  makes it an approximation: the kernel may still hand two bytes to one ``read()`` when a thread
  is descheduled. The relay also carries unplug/replug through: when the emulator's pty goes away
  it closes the kiosk-side pty and removes its symlink, and recreates both on replug.
* ``delayed``: the emulator's ``response_delay_s=0.05`` (50 ms before each response leaves, 2.5x
  the spec's 20 ms deadline), so the first transmission of a request with the initial RTO is
  often retransmitted and answered from the duplicate cache; SRTT must learn the delay.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk.hardware.board import BoardOffline, BoardVendResult, SerialBoard, VendTimeout
from kiosk.hardware.link import LinkTiming, SerialLink
from kiosk.hardware.protocol import Outcome
from kiosk.sim.board_emulator import read_physical_log
from kiosk.sim.emulator_transports import send_control

REPO = Path(__file__).resolve().parents[2]

WIRE_FAULTS: dict[str, list[str]] = {
    "clean": [],
    "lossy": ["drop_byte_ratio=0.05", "bit_flip_ratio=0.01"],
    "bytewise": [],
    "delayed": ["response_delay_s=0.05"],
}
WIRES = tuple(WIRE_FAULTS)


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


# ---------------------------------------------------------------------------- emulator process


class EmulatorProcess:
    """`python -m kiosk.cli emulator --pty ...` as a child process, with its files in ``dir``."""

    def __init__(
        self,
        directory: Path,
        *,
        time_scale: float = 0.01,
        stock: int = 5,
        seed: int = 1,
        baud: int = 115200,
        faults: list[str] | None = None,
        extra: list[str] | None = None,
    ) -> None:
        self.dir = directory
        self.pty = directory / "board"
        self.log_path = directory / "physical.jsonl"
        self.memory = directory / "mem.json"
        self.control = directory / "ctl.sock"
        self.stderr_path = directory / "emulator.err"
        self.argv = [
            sys.executable,
            "-m",
            "kiosk.cli",
            "emulator",
            "--pty",
            str(self.pty),
            "--time-scale",
            str(time_scale),
            "--log",
            str(self.log_path),
            "--memory-file",
            str(self.memory),
            "--control",
            str(self.control),
            "--seed",
            str(seed),
            "--stock",
            str(stock),
            "--baud",
            str(baud),
        ]
        for f in faults or []:
            self.argv += ["--fault", f]
        self.argv += extra or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> EmulatorProcess:
        self._err = self.stderr_path.open("wb")
        proc = self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        ready = wait_until(
            lambda: (self.pty.is_symlink() and self.control.exists()) or proc.poll() is not None,
            timeout,
        )
        if not ready or proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"emulator did not start: {self.stderr()}")
        return self

    def ctl(self, command: str) -> str:
        reply = send_control(str(self.control), command)
        assert reply.startswith("ok"), f"emulator ctl {command!r}: {reply}"
        return reply[3:]

    def physical_log(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return read_physical_log(self.log_path)

    def runs(self) -> dict[int, list[dict[str, Any]]]:
        """tx -> its motor_run / lock_pulse entries."""
        out: dict[int, list[dict[str, Any]]] = {}
        for e in self.physical_log():
            if e.get("event") in ("motor_run", "lock_pulse"):
                out.setdefault(int(e["tx"]), []).append(e)
        return out

    def stderr(self) -> str:
        with contextlib.suppress(OSError):
            return self.stderr_path.read_text(errors="replace")[-4000:]
        return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        with contextlib.suppress(Exception):
            self._err.close()
        return self.proc.returncode


# ---------------------------------------------------------------------------- bytewise relay


def _raw_pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


class PtyRelay:
    """A raw pty peer between the emulator's pty (``upstream``) and a pty of its own (``path``).

    ``bytewise``: every byte is its own ``write()``, 0.2 ms apart, both ways. ``inject(data)``
    writes extra bytes toward the kiosk (garbage on the line). The kiosk opens ``path`` (a symlink
    to the relay's slave). Unplug is carried through: when the emulator's side fails or its
    symlink disappears, the relay closes its own pty and removes ``path``; when the emulator's
    symlink is back, the relay opens it and a fresh pty of its own.
    """

    GAP_S = 0.0002

    def __init__(self, upstream: Path, path: Path, *, bytewise: bool = True) -> None:
        self.upstream = upstream
        self.path = path
        self.bytewise = bytewise
        self.bytes_forwarded = 0
        self.writes = 0
        self._down: int | None = None
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hil-relay", daemon=True)

    def start(self) -> PtyRelay:
        self._thread.start()
        if not wait_until(self.path.is_symlink, 10.0):
            raise RuntimeError("relay did not come up")
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.upstream.is_symlink():
                self._stop.wait(0.01)
                continue
            try:
                up = os.open(self.upstream, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            except OSError:
                self._stop.wait(0.01)
                continue
            tty.setraw(up)
            master, slave, device = _raw_pty()
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(device, tmp)
            os.replace(tmp, self.path)
            self._down = master
            try:
                self._pump(up, master)
            finally:
                self._down = None
                with contextlib.suppress(OSError):
                    self.path.unlink()
                for fd in (up, master, slave):
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def _pump(self, up: int, down: int) -> None:
        peer = {up: down, down: up}
        while not self._stop.is_set():
            if not self.upstream.is_symlink():
                return  # the emulator was unplugged
            ready, _, _ = select.select([up, down], [], [], 0.02)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except BlockingIOError:
                    continue
                except OSError:
                    return  # EIO: the other end of that pty went away
                if not data:
                    return
                if not self.bytewise:
                    self._write_all(peer[fd], data)
                    self.bytes_forwarded += len(data)
                    self.writes += 1
                    continue
                for b in data:
                    self._write_all(peer[fd], bytes((b,)))
                    self.bytes_forwarded += 1
                    self.writes += 1
                    time.sleep(self.GAP_S)

    def inject(self, data: bytes) -> bool:
        """Write ``data`` toward the kiosk now (False while unplugged)."""
        fd = self._down
        if fd is None:
            return False
        self._write_all(fd, data)
        return True

    def _write_all(self, fd: int, data: bytes) -> None:
        with self._write_lock:
            view = memoryview(data)
            for _ in range(2000):
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    time.sleep(0.0005)
                    continue
                except OSError:
                    return
                view = view[n:]
                if not view:
                    return


# ---------------------------------------------------------------------------- the kiosk side


# Link timing for the clean, bytewise and delayed wires: the production constants, except that a
# board that stopped answering is probed every 0.5 s instead of 5 s, so a test that pulls the
# cable does not wait 5 s for the first probe. RTO, polling, gaps and reconnect are production.
TEST_TIMING = LinkTiming(probe_interval=0.5)

# The lossy wire runs with scaled-down link timers (bellows does the same) and a 921600-baud wire.
# Measured with the production timers, 5 % byte loss + 1 % bit flips in both directions cost
# 2.4..15 s per vend (a 13-byte VEND and its 14-byte TX_REPLY get through together 19 % of the
# time, an IDENTIFY exchange 5 %; the RTO doubles from 46 ms to 5 s over 8 transmissions), so 500
# vends would take hours. What the lossy tests check (no double dispense, every outcome known,
# OUTCOME instead of resending) does not depend on these constants; max_transmissions stays 8 so
# LinkTimeout / BoardOffline / re-IDENTIFY still happen often.
LOSSY_BAUD = 921600
LOSSY_TIMING = LinkTiming(
    rto_initial=0.05,
    rto_min=0.015,
    rto_max=0.03,
    poll_busy=0.01,
    probe_interval=0.05,
    reconnect_min=0.05,
    reconnect_max=0.5,
)
WIRE_LINK: dict[str, tuple[int, LinkTiming]] = {
    "clean": (115200, TEST_TIMING),
    "lossy": (LOSSY_BAUD, LOSSY_TIMING),
    "bytewise": (115200, TEST_TIMING),
    "delayed": (115200, TEST_TIMING),
}


@dataclass
class Kiosk:
    """The kiosk end of the cable: a real ``SerialLink`` on ``url`` and a ``SerialBoard``."""

    url: str
    link: SerialLink
    board: SerialBoard
    events: list[Any] = field(default_factory=list)

    def counters(self) -> dict[str, int]:
        return self.link.counters()


def open_kiosk(url: str, baud: int = 115200, timing: LinkTiming = TEST_TIMING) -> Kiosk:
    events: list[Any] = []
    link = SerialLink(url, baud, timing=timing, on_event=lambda a, e: events.append(e))
    board = SerialBoard(link, 0)
    link.start()
    kiosk = Kiosk(url, link, board, events)
    if not link.wait_online(20.0):
        link.close()
        raise RuntimeError(f"link to {url} did not come online: {link.last_error}")
    return kiosk


@dataclass
class Resolved:
    """How one tx ended as the kiosk learned it."""

    tx: int
    outcome: Outcome
    via: str  # "vend" (the vend call returned), or "outcome" (a later OUTCOME query)
    error: str = ""


def resolve_outcome(board: SerialBoard, tx: int, timeout: float = 60.0) -> Outcome:
    """Ask OUTCOME until the board gives a final answer (what the sale layer does after an
    unknown outcome). Raises AssertionError when it cannot within ``timeout``."""
    deadline = time.monotonic() + timeout
    last: str = ""
    while time.monotonic() < deadline:
        try:
            found = board.outcome(tx)
        except BoardOffline as e:
            last = str(e)
            time.sleep(0.05)
            continue
        if found.is_final:
            return found
        last = found.name
        time.sleep(0.02)
    raise AssertionError(f"tx {tx}: no final outcome after {timeout} s ({last})")


def vend_and_resolve(board: SerialBoard, slot: int, tx: int, timeout: float = 30.0) -> Resolved:
    """One vend as the kiosk does it: ``vend``; if its outcome is unknown, ask ``outcome(tx)``."""
    try:
        r: BoardVendResult = board.vend(slot, tx, timeout)
        return Resolved(tx, r.outcome, "vend")
    except (BoardOffline, VendTimeout) as e:
        return Resolved(tx, resolve_outcome(board, tx), "outcome", f"{type(e).__name__}: {e}")


def vend_until_known(board: SerialBoard, slot: int, tx: int, attempts: int = 30) -> Resolved:
    """``vend_and_resolve``, again with the same tx while the board answers UNKNOWN_TX.

    Only for boards that did not lose their memory: then UNKNOWN_TX means the VEND never reached
    the board (lost on the wire, or not sent because the board was marked silent), so sending the
    same tx again is safe, and if it had run, the board would answer from its record instead.
    """
    for _ in range(attempts):
        r = vend_and_resolve(board, slot, tx)
        if r.outcome is not Outcome.UNKNOWN_TX:
            return r
    raise AssertionError(f"tx {tx}: still UNKNOWN_TX after {attempts} attempts")


class Rig:
    """One emulator process (+ relay for ``bytewise``) and the kiosk link to it."""

    def __init__(self, directory: Path, wire: str, **emu_opts: Any) -> None:
        faults = list(WIRE_FAULTS[wire]) + list(emu_opts.pop("faults", []))
        self.wire = wire
        baud, timing = WIRE_LINK[wire]
        self.emu = EmulatorProcess(directory, faults=faults, baud=baud, **emu_opts).start()
        self.relay: PtyRelay | None = None
        url = str(self.emu.pty)
        if wire == "bytewise":
            self.relay = PtyRelay(self.emu.pty, directory / "relay").start()
            url = str(self.relay.path)
        self.kiosk = open_kiosk(url, baud, timing)

    @property
    def board(self) -> SerialBoard:
        return self.kiosk.board

    @property
    def link(self) -> SerialLink:
        return self.kiosk.link

    def close(self) -> None:
        self.kiosk.link.close()
        if self.relay is not None:
            self.relay.close()
        code = self.emu.stop()
        assert code == 0, f"emulator exited with {code}: {self.emu.stderr()}"
