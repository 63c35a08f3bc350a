"""Board emulator runner, transports and control channel.

Owns: the thread that drives an `EmulatedBoard` in real time, pacing bytes at the configured baud
in both directions (10 bits per byte, so wire time is real); the transports the kiosk connects
through (in-process `emu://NAME` pyserial URL, TCP `socket://127.0.0.1:PORT`, and a pseudo-terminal
behind a stable symlink such as /tmp/kiosk-board); unplug/replug; and the line-based control
channel a person or a test uses to break the board on purpose (docs/emulator.md).

It must never implement protocol behaviour or frame layout (that is kiosk.sim.board_emulator and
kiosk.hardware.protocol), and never touch a real serial device: a path that exists and is not a
symlink is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import stat
import struct
import termios
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import serial

from kiosk.hardware.protocol import SERVICE_DOOR, ResetReason
from kiosk.sim.board_emulator import EmulatedBoard, parse_bool
from kiosk.sim.vmc_emulator import VmcEmulatedBoard

__all__ = [
    "DEFAULT_PTY",
    "ControlServer",
    "Emulator",
    "InProcessTransport",
    "PtyTransport",
    "TcpTransport",
    "Transport",
    "install_url_handler",
    "lookup_inprocess",
    "send_control",
]

DEFAULT_PTY = "/tmp/kiosk-board"
URL_HANDLER_PACKAGE = "kiosk.sim.urlhandler"
log = logging.getLogger("kiosk.sim.emulator")
STALE_PTY_BYTES = 3000  # unread bytes in the pty beyond this mean nobody listens: flush them


def install_url_handler() -> None:
    """Make `serial.serial_for_url("emu://NAME")` reach in-process emulators."""
    if URL_HANDLER_PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(URL_HANDLER_PACKAGE)


install_url_handler()

Sink = Callable[[bytes], None]


class Transport(Protocol):
    """Where the board's wire ends. Threads it starts call `sink(bytes)` with received bytes."""

    def start(self, sink: Sink) -> None: ...

    def write(self, data: bytes) -> None:
        """Send to the host now; silently dropped when nobody is connected (like a wire)."""
        ...

    def unplug(self) -> None: ...

    def replug(self) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


# --------------------------------------------------------------------------
# In-process transport (emu://NAME)
# --------------------------------------------------------------------------


class InProcessClient(Protocol):
    """What the emu:// pyserial port offers the transport."""

    def deliver(self, data: bytes) -> None: ...

    def disconnect(self) -> None: ...


_REGISTRY: dict[str, InProcessTransport] = {}
_REGISTRY_LOCK = threading.Lock()


def lookup_inprocess(name: str) -> InProcessTransport | None:
    with _REGISTRY_LOCK:
        return _REGISTRY.get(name)


class InProcessTransport:
    """A named in-process wire; the kiosk opens it with `serial.serial_for_url("emu://NAME")`."""

    def __init__(self, name: str = "board0") -> None:
        self.name = name
        self._sink: Sink | None = None
        self._client: InProcessClient | None = None
        self._unplugged = False
        self._lock = threading.Lock()

    def start(self, sink: Sink) -> None:
        with _REGISTRY_LOCK:
            if self.name in _REGISTRY:
                raise ValueError(f"an emulator named {self.name!r} already runs in this process")
            _REGISTRY[self.name] = self
        self._sink = sink

    def attach(self, client: InProcessClient) -> None:
        """Called by the emu:// port on open(); a second open takes the wire over."""
        with self._lock:
            if self._unplugged:
                raise serial.SerialException(f"emu://{self.name}: device unplugged")
            old, self._client = self._client, client
        if old is not None and old is not client:
            old.disconnect()

    def detach(self, client: InProcessClient) -> None:
        with self._lock:
            if self._client is client:
                self._client = None

    def from_host(self, data: bytes) -> None:
        sink = self._sink
        if sink is not None and not self._unplugged:
            sink(data)

    def write(self, data: bytes) -> None:
        with self._lock:
            client = self._client
        if client is not None:
            client.deliver(data)

    def unplug(self) -> None:
        with self._lock:
            self._unplugged = True
            client, self._client = self._client, None
        if client is not None:
            client.disconnect()

    def replug(self) -> None:
        with self._lock:
            self._unplugged = False

    def close(self) -> None:
        self.unplug()
        with _REGISTRY_LOCK:
            if _REGISTRY.get(self.name) is self:
                del _REGISTRY[self.name]

    def describe(self) -> str:
        return f"emu://{self.name}"


# --------------------------------------------------------------------------
# TCP transport
# --------------------------------------------------------------------------


class TcpTransport:
    """Listens on host:port (127.0.0.1 by default), one client at a time: a new connection
    replaces the old one (a restarted kiosk must not be locked out by its own dead socket)."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self._sink: Sink | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: Sink) -> None:
        self._sink = sink
        self._listen()
        self._thread = threading.Thread(target=self._accept_loop, name="emu-tcp", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((self.host, self.port))
        ls.listen(1)
        ls.settimeout(0.1)
        self.port = ls.getsockname()[1]
        with self._lock:
            self._listener = ls

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            with self._lock:
                ls = self._listener
            if ls is None:
                self._closed.wait(0.05)
                continue
            try:
                conn, _ = ls.accept()
            except (TimeoutError, OSError):
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(None)
            with self._lock:
                old, self._client = self._client, conn
            if old is not None:
                _close_socket(old)
            threading.Thread(
                target=self._read_loop, args=(conn,), name="emu-tcp-rx", daemon=True
            ).start()

    def _read_loop(self, conn: socket.socket) -> None:
        try:
            while True:
                try:
                    data = conn.recv(4096)
                except OSError:
                    break
                if not data:
                    break
                with self._lock:
                    current = self._client is conn
                if not current:
                    break
                if self._sink is not None:
                    self._sink(data)
        finally:
            with self._lock:
                if self._client is conn:
                    self._client = None
            _close_socket(conn)

    def write(self, data: bytes) -> None:
        with self._lock:
            conn = self._client
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.sendall(data)

    def unplug(self) -> None:
        with self._lock:
            ls, self._listener = self._listener, None
            conn, self._client = self._client, None
        for s in (ls, conn):
            if s is not None:
                _close_socket(s)

    def replug(self) -> None:
        with self._lock:
            listening = self._listener is not None
        if not listening:
            self._listen()

    def close(self) -> None:
        self._closed.set()
        self.unplug()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def describe(self) -> str:
        return f"socket://{self.host}:{self.port}"


def _close_socket(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()


# --------------------------------------------------------------------------
# Pseudo-terminal transport
# --------------------------------------------------------------------------


class PtyTransport:
    """A pseudo-terminal in raw mode, echo off, behind a stable symlink (default /tmp/kiosk-board).

    The emulator keeps a slave fd open itself, so reading the master never fails with EIO while no
    kiosk is attached; bytes sent while nobody listens pile up in the pty and are flushed once more
    than STALE_PTY_BYTES wait (a host should still flush its input after opening). Unplug closes
    the pty and removes the symlink: the kiosk's reads and writes fail like a pulled USB cable;
    replug makes a new pty behind the same path.
    """

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PTY) -> None:
        self.path = Path(path)
        self.device: str | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._sink: Sink | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: Sink) -> None:
        self._sink = sink
        self._open()
        self._thread = threading.Thread(target=self._read_loop, name="emu-pty", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        if self.path.exists() and not self.path.is_symlink():
            raise FileExistsError(
                f"{self.path} exists and is not a symlink; refusing to replace it"
            )
        master, slave = os.openpty()
        tty.setraw(slave)  # raw mode: no echo, no line editing, no CR/LF translation
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG)
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        os.set_blocking(master, False)
        device = os.ttyname(slave)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(device, tmp)
        os.replace(tmp, self.path)
        with self._lock:
            self._master, self._slave, self.device = master, slave, device

    def _read_loop(self) -> None:
        import select

        while not self._closed.is_set():
            with self._lock:
                fd = self._master
            if fd is None:
                self._closed.wait(0.02)
                continue
            try:
                ready, _, _ = select.select([fd], [], [], 0.05)
            except (OSError, ValueError):
                continue
            if not ready:
                continue
            data = b""
            with self._lock:
                if fd != self._master:
                    continue
                try:
                    data = os.read(fd, 4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""  # EIO: no slave open (cannot happen while we hold one)
            if data and self._sink is not None:
                self._sink(data)
            elif not data:
                self._closed.wait(0.01)

    def write(self, data: bytes) -> None:
        with self._lock:
            fd, slave = self._master, self._slave
            if fd is None or slave is None:
                return
            with contextlib.suppress(OSError):
                waiting = struct.unpack(
                    "i", fcntl.ioctl(slave, termios.FIONREAD, struct.pack("i", 0))
                )[0]
                if waiting > STALE_PTY_BYTES:
                    termios.tcflush(slave, termios.TCIFLUSH)
            with contextlib.suppress(OSError):  # EAGAIN: the pty is full, the bytes are lost
                os.write(fd, data)

    def _close_pty(self) -> None:
        with self._lock:
            fds = (self._master, self._slave)
            device = self.device
            self._master = self._slave = None
            self.device = None
        for fd in fds:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        with contextlib.suppress(OSError):
            if self.path.is_symlink() and os.readlink(self.path) == device:
                self.path.unlink()

    def unplug(self) -> None:
        self._close_pty()

    def replug(self) -> None:
        with self._lock:
            plugged = self._master is not None
        if not plugged:
            self._open()

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._close_pty()

    def describe(self) -> str:
        return f"{self.path} -> {self.device}"


# --------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------


class Emulator:
    """Runs an `EmulatedBoard` (or a `VmcEmulatedBoard`: the same shape, but the master)
    behind a transport in real time (one thread), pacing bytes at `baud` both ways. Python API
    for tests; `command()` is the control channel's language."""

    def __init__(
        self,
        board: EmulatedBoard | VmcEmulatedBoard,
        transport: Transport,
        *,
        baud: int = 115200,
        control: str | None = None,
    ) -> None:
        if baud <= 0:
            raise ValueError("baud must be > 0")
        self.board = board
        self.transport = transport
        self.baud = baud
        self._chunk = max(1, round(baud / 10 * 0.001))  # ~1 ms of wire time per chunk
        self._cond = threading.Condition()
        self._inbound: deque[tuple[float, bytes]] = deque()
        self._outbound: deque[tuple[float, bytes]] = deque()
        self._rx_free = 0.0
        self._tx_free = 0.0
        self._replug_at: float | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._control_address = control
        self.control: ControlServer | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> Emulator:
        self.transport.start(self._wire_in)
        self._thread = threading.Thread(target=self._loop, name="emu-board", daemon=True)
        self._thread.start()
        if self._control_address is not None:
            self.control = ControlServer(self._control_address, self.command).start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.control is not None:
            self.control.close()
        self.transport.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> str:
        return self.transport.describe()

    # -- wire ------------------------------------------------------------------------

    def _now(self) -> float:
        return self.board.clock.monotonic()

    def _pace(self, data: bytes, free_at: float, queue: deque[tuple[float, bytes]]) -> float:
        t = max(self._now(), free_at)
        per_byte = 10.0 / self.baud
        for i in range(0, len(data), self._chunk):
            chunk = data[i : i + self._chunk]
            t += len(chunk) * per_byte
            queue.append((t, chunk))
        return t

    def _wire_in(self, data: bytes) -> None:
        with self._cond:
            self._rx_free = self._pace(data, self._rx_free, self._inbound)
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            try:
                if not self._step():
                    return
            except Exception:  # keep the board alive: a failed step is logged, not fatal
                log.exception("board emulator step failed")
                time.sleep(0.01)

    def _step(self) -> bool:
        """One pass of the runner; False when stopping."""
        while True:
            with self._cond:
                if self._stopping:
                    return False
                now = self._now()
                if self._replug_at is not None and now >= self._replug_at:
                    self._replug_at = None
                    self._replug_locked()
                while self._inbound and self._inbound[0][0] <= now:
                    self.board.receive(self._inbound.popleft()[1])
                out = self.board.read_output()
                if out:
                    self._tx_free = self._pace(out, self._tx_free, self._outbound)
                writes = bytearray()
                while self._outbound and self._outbound[0][0] <= now:
                    writes += self._outbound.popleft()[1]
                if not writes:
                    times = [self._replug_at, self.board.next_deadline()]
                    if self._inbound:
                        times.append(self._inbound[0][0])
                    if self._outbound:
                        times.append(self._outbound[0][0])
                    due = min((t for t in times if t is not None), default=now + 0.5)
                    self._cond.wait(min(max(due - now, 0.0005), 0.5))
                    continue
            self.transport.write(bytes(writes))
            return True

    # -- faults and actions (thread-safe) ---------------------------------------------

    def set_fault(self, name: str, value: object) -> None:
        if name == "unplugged":
            if parse_bool(value):
                self.unplug()
            else:
                self.replug()
            return
        self.board.set_fault(name, value)
        self._kick()

    def _kick(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def reset(self, lose_memory: bool = False) -> None:
        self.board.reset(lose_memory, ResetReason.WATCHDOG)
        self._kick()

    def unplug(self, seconds: float | None = None) -> None:
        """Pull the cable; with `seconds`, plug it back in after that long (real time)."""
        with self._cond:
            self.board.set_fault("unplugged", True)
            self.transport.unplug()
            self._inbound.clear()
            self._outbound.clear()
            self._replug_at = None if seconds is None else self._now() + seconds
            self._cond.notify_all()

    def replug(self) -> None:
        with self._cond:
            self._replug_at = None
            self._replug_locked()
            self._cond.notify_all()

    def _replug_locked(self) -> None:
        self.transport.replug()
        self.board.set_fault("unplugged", False)

    @property
    def physical_log(self) -> list[dict[str, Any]]:
        return list(self.board.log.entries)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll `predicate` until true or `timeout` (real seconds) passes."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)

    # -- control language ----------------------------------------------------------

    def command(self, line: str) -> str:
        """Run one control command; returns one reply line ("ok ..." or "error ...")."""
        words = line.split()
        if not words:
            return "error empty command"
        name, args = words[0].lower(), words[1:]
        handler = _COMMANDS.get(name)
        if handler is None:
            return f"error unknown command {name!r} (try: help)"
        try:
            result = handler(self, args)
        except (ValueError, KeyError, IndexError, TypeError, OSError) as e:
            return f"error {e}"
        return "ok" if result is None else f"ok {result}"


def _slot(args: list[str], i: int = 0) -> int:
    return int(args[i])


def _cmd_jam(emu: Emulator, args: list[str], jam: bool) -> None:
    slots = set(emu.board.faults.jammed)
    for a in args or ["?"]:
        (slots.add if jam else slots.discard)(int(a))
    emu.set_fault("jammed", slots)


def _cmd_motor(emu: Emulator, args: list[str]) -> None:
    slot, state = _slot(args), args[1].lower()
    missing = set(emu.board.faults.missing_motor)
    if state in ("missing", "off", "0"):
        missing.add(slot)
    elif state in ("present", "on", "1"):
        missing.discard(slot)
    else:
        raise ValueError("usage: motor SLOT missing|present")
    emu.set_fault("missing_motor", missing)


def _cmd_blind(emu: Emulator, args: list[str]) -> None:
    word = args[0].lower()
    if word in ("on", "off", "1", "0", "true", "false"):
        emu.set_fault("blind_drop_sensor", word)
        return
    current = emu.board.faults.blind_drop_sensor
    slots = set() if isinstance(current, bool) else set(current)
    if len(args) > 1 and args[1].lower() in ("off", "0"):
        slots.discard(int(word))
    else:
        slots.add(int(word))
    emu.set_fault("blind_drop_sensor", slots)


def _cmd_door(emu: Emulator, args: list[str]) -> None:
    if len(args) == 1:
        door, state = SERVICE_DOOR, args[0].lower()
    else:
        door, state = int(args[0]), args[1].lower()
    if state not in ("open", "close", "closed"):
        raise ValueError("usage: door [SLOT] open|close")
    emu.board.set_door(door, state == "open")
    emu._kick()


def _cmd_reset(emu: Emulator, args: list[str]) -> None:
    mode = (args[0] if args else "keep").lower()
    if mode not in ("keep", "lose"):
        raise ValueError("usage: reset keep|lose")
    emu.reset(lose_memory=mode == "lose")


def _cmd_unplug(emu: Emulator, args: list[str]) -> None:
    emu.unplug(float(args[0]) if args else None)


def _cmd_stock(emu: Emulator, args: list[str]) -> None:
    emu.board.set_stock(_slot(args), int(args[1]))


def _cmd_temp(emu: Emulator, args: list[str]) -> None:
    emu.board.set_temperature(float(args[0]))
    emu._kick()


def _cmd_set(emu: Emulator, args: list[str]) -> None:
    if len(args) == 1 and "=" in args[0]:
        name, value = args[0].split("=", 1)
    else:
        name, value = args[0], " ".join(args[1:])
    emu.set_fault(name, value)


def _cmd_log(emu: Emulator, args: list[str]) -> str:
    n = int(args[0]) if args else 20
    return json.dumps(emu.board.log.tail(n), separators=(",", ":"))


def _knob(name: str) -> Callable[[Emulator, list[str]], None]:
    def run(emu: Emulator, args: list[str]) -> None:
        emu.set_fault(name, args[0] if args else "on")

    return run


_COMMANDS: dict[str, Callable[[Emulator, list[str]], str | None]] = {
    "help": lambda emu, args: " ".join(sorted(_COMMANDS)),
    "status": lambda emu, args: json.dumps(emu.board.snapshot(), separators=(",", ":")),
    "busy": lambda emu, args: json.dumps(emu.board.busy(), separators=(",", ":")),
    "faults": lambda emu, args: json.dumps(emu.board.faults.as_dict(), separators=(",", ":")),
    "log": _cmd_log,
    "jam": lambda emu, args: _cmd_jam(emu, args, True),
    "unjam": lambda emu, args: _cmd_jam(emu, args, False),
    "motor": _cmd_motor,
    "blind": _cmd_blind,
    "stock": _cmd_stock,
    "reset": _cmd_reset,
    "unplug": _cmd_unplug,
    "replug": lambda emu, args: emu.replug(),
    "door": _cmd_door,
    "leaveopen": _knob("door_left_open"),
    "noopen": _knob("door_not_opened"),
    "temp": _cmd_temp,
    "alarm": _knob("temperature_alarm"),
    "drop": _knob("drop_byte_ratio"),
    "flip": _knob("bit_flip_ratio"),
    "dup": _knob("duplicate_frame_ratio"),
    "delay": _knob("response_delay_s"),
    "lose": _knob("drop_response_ratio"),
    "mute": _knob("mute"),
    "resetmidvend": _knob("reset_mid_vend"),
    "set": _cmd_set,
}


# --------------------------------------------------------------------------
# Control channel
# --------------------------------------------------------------------------


def _is_tcp(address: str) -> bool:
    return address.isdigit() or (":" in address and address.rsplit(":", 1)[1].isdigit())


def _tcp_address(address: str) -> tuple[str, int]:
    if address.isdigit():
        return "127.0.0.1", int(address)
    host, port = address.rsplit(":", 1)
    return host or "127.0.0.1", int(port)


class ControlServer:
    """Line-based text commands over a UNIX socket (a path) or TCP ("PORT" / "HOST:PORT",
    localhost only by default). One reply line per command line."""

    def __init__(self, address: str, handler: Callable[[str], str]) -> None:
        self.address = address
        self._handler = handler
        self._sock: socket.socket | None = None
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ControlServer:
        if _is_tcp(self.address):
            host, port = _tcp_address(self.address)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            self.address = f"{host}:{s.getsockname()[1]}"
        else:
            path = Path(self.address)
            if path.exists():
                if not stat.S_ISSOCK(path.lstat().st_mode):
                    raise FileExistsError(f"{path} exists and is not a socket")
                path.unlink()
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(str(path))
        s.listen(4)
        s.settimeout(0.1)
        self._sock = s
        self._thread = threading.Thread(target=self._accept_loop, name="emu-ctl", daemon=True)
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            s = self._sock
            if s is None:
                return
            try:
                conn, _ = s.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(None)
        with conn, conn.makefile("rwb") as f:
            for raw in f:
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                reply = self._handler(line).replace("\n", " ")
                try:
                    f.write(reply.encode() + b"\n")
                    f.flush()
                except OSError:
                    return

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        if not _is_tcp(self.address):
            with contextlib.suppress(OSError):
                p = Path(self.address)
                if p.exists() and stat.S_ISSOCK(p.lstat().st_mode):
                    p.unlink()


def send_control(address: str, command: str, timeout: float = 5.0) -> str:
    """Send one control command and return the reply line (without the newline)."""
    if _is_tcp(address):
        s = socket.create_connection(_tcp_address(address), timeout=timeout)
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(address)
        except OSError:
            s.close()
            raise
    with s, s.makefile("rwb") as f:
        f.write(command.strip().encode() + b"\n")
        f.flush()
        reply = f.readline()
    if not reply:
        raise ConnectionError(errno.ECONNRESET, "control channel closed without a reply")
    return reply.decode("utf-8", "replace").rstrip("\n")
