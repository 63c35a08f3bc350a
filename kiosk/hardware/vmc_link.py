"""The serial side of the VMC protocol: the port, the reader thread and the upper session.

Owns: opening (and reopening) the port, the one thread that reads the VMC's bytes and writes
the session's answer at once (so a POLL is answered within the 100 ms budget: nothing slow runs
between reading a POLL and writing its answer), whether the VMC is online (it polls), and
handing session events to listeners. Implements ``kiosk.hardware.board.BoardLink`` so the
composition root can start, watch and close it like today's ``SerialLink``.

Must never: decide what a frame means for a vend (``kiosk.hardware.vmc_driver`` does), know
a byte layout (``kiosk.hardware.vmc_protocol`` does), or resend anything itself: resends,
numbers and duplicates are the sans-I/O ``UpperSession``'s.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import serial

from kiosk.clock import Clock, SystemClock
from kiosk.hardware.vmc_protocol import (
    BAUD_RATE,
    CommandGivenUp,
    Queued,
    SessionConfig,
    SessionEvent,
    UpperCommand,
    UpperSession,
    VmcResumed,
    VmcSilent,
)
from kiosk.log import log_event

__all__ = ["SessionListener", "VmcLink"]

log = logging.getLogger("kiosk.hardware.vmc")

SessionListener = Callable[[SessionEvent], None]
"""Runs on the reader thread, right after the answer was written: keep it short."""
StateListener = Callable[[bool, str], None]

READ_TIMEOUT_S = 0.01  # the reader wakes at least this often (idle-gap and silence checks)
REOPEN_EVERY_S = 1.0


class VmcLink:
    """One VMC on one serial port. The kiosk is the slave: it only ever answers."""

    def __init__(
        self,
        port: str,
        baud: int = BAUD_RATE,
        *,
        clock: Clock | None = None,
        session_config: SessionConfig | None = None,
    ) -> None:
        self.port_name = port
        self.baud = baud
        self._clock: Clock = clock or SystemClock()
        # The restart rule (docs/boards/vmc.md section 10): every start begins with an
        # information sync, which burns the one number the VMC might ignore.
        self.session = UpperSession(None, session_config)
        self._lock = threading.Lock()
        self._port: Any = None
        self._online = False
        self._port_up = False
        self._last_error = "not started"
        self._frames_seen = 0
        self._listeners: list[SessionListener] = []
        self._state_listeners: list[StateListener] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counters_extra = {"reopens": 0, "write_errors": 0}

    # ------------------------------------------------------------------ BoardLink

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="kiosk-vmc-rx", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        self._close_port("link closed")

    def add_state_listener(self, fn: StateListener) -> None:
        self._state_listeners.append(fn)

    @property
    def online(self) -> bool:
        """The port is open and the VMC is polling."""
        with self._lock:
            return self._online

    @property
    def port_open(self) -> bool:
        with self._lock:
            return self._port_up

    @property
    def last_error(self) -> str:
        with self._lock:
            return self._last_error

    def counters(self) -> dict[str, int]:
        with self._lock:
            s = self.session.stats
            d = self.session.decoder
            return {
                "polls": s.polls,
                "resends": s.resends,
                "acked": s.acked,
                "given_up": s.given_up,
                "stray_acks": s.stray_acks,
                "duplicates": s.duplicates,
                "reused_numbers": s.reused_numbers,
                "undecodable": s.undecodable,
                "frames_ok": d.frames_ok,
                "xor_errors": d.xor_errors,
                "false_starts": d.false_starts,
                "bytes_discarded": d.bytes_discarded,
                **self.counters_extra,
            }

    # ------------------------------------------------------------------ for the driver

    def add_listener(self, fn: SessionListener) -> None:
        self._listeners.append(fn)

    def queue(self, message: UpperCommand) -> Queued:
        """Queue a command for the next POLL (raises vmc_protocol.BadValue on a full queue)."""
        with self._lock:
            return self.session.queue(message)

    def cancel(self, handle: int) -> bool:
        """Withdraw a command that has not left yet (True) or learn that it has (False)."""
        with self._lock:
            return self.session.cancel(handle)

    def pending(self, kind: type[UpperCommand] | UpperCommand) -> int | None:
        """Handle of a command of this kind (or this command) queued or awaiting its ACK
        (UpperSession.pending)."""
        with self._lock:
            return self.session.pending(kind)

    def wait_online(self, timeout: float) -> bool:
        deadline = self._clock.monotonic() + timeout
        while not self.online and self._clock.monotonic() < deadline:
            if self._stop.wait(0.02):
                break
        return self.online

    # ------------------------------------------------------------------ reader thread

    def _run(self) -> None:
        while not self._stop.is_set():
            port = self._port
            if port is None:
                if not self._open():
                    self._stop.wait(REOPEN_EVERY_S)
                continue
            try:
                data = port.read(max(1, port.in_waiting))
            except (OSError, serial.SerialException, TypeError, AttributeError) as e:
                self._close_port(f"read failed: {e}")
                continue
            self._step(port, bytes(data))

    def _step(self, port: Any, data: bytes) -> None:
        now = self._clock.monotonic()
        with self._lock:
            out = self.session.receive_data(data, now) if data else self.session.tick(now)
            events = list(out.events)
            if data:
                events += self.session.tick(now).events
            frames = self.session.decoder.frames_ok
            heard = frames != self._frames_seen
            self._frames_seen = frames
        if out.send:
            try:
                port.write(out.send)
            except (OSError, serial.SerialException) as e:
                self.counters_extra["write_errors"] += 1
                self._close_port(f"write failed: {e}")
        if heard and not any(isinstance(e, VmcSilent) for e in events):
            self._set_online(True, "VMC polling")
        for event in events:
            if isinstance(event, VmcSilent):
                silent_s = self.session.config.silence_timeout
                self._set_online(False, f"VMC silent (no frame for {silent_s:g} s)")
            elif isinstance(event, VmcResumed):
                self._set_online(True, "VMC polling again")
            elif isinstance(event, CommandGivenUp):
                log_event(
                    log,
                    "vmc.command_given_up",
                    logging.WARNING,
                    command=type(event.message).__name__,
                    comm=event.comm,
                    sends=event.sends,
                    reason=event.reason.value,
                )
            for fn in list(self._listeners):
                try:
                    fn(event)
                except Exception:
                    log.exception("vmc.listener_failed")

    def _open(self) -> bool:
        try:
            port = serial.serial_for_url(
                self.port_name, self.baud, timeout=READ_TIMEOUT_S, write_timeout=0.5
            )
            with contextlib.suppress(Exception):
                port.reset_input_buffer()
        except (OSError, serial.SerialException, ValueError) as e:
            with self._lock:
                self._last_error = f"cannot open {self.port_name}: {e}"
            return False
        with self._lock:
            self._port = port
            self._port_up = True
            self.counters_extra["reopens"] += 1
        log_event(log, "vmc.port_open", port=self.port_name, baud=self.baud)
        return True

    def _close_port(self, reason: str) -> None:
        with self._lock:
            port, self._port = self._port, None
            self._port_up = False
            self._last_error = reason
        if port is not None:
            with contextlib.suppress(Exception):
                port.close()
        self._set_online(False, reason)

    def _set_online(self, online: bool, reason: str) -> None:
        with self._lock:
            if self._online == online:
                return
            self._online = online
            if not online:
                self._last_error = reason
        log_event(log, "vmc.online" if online else "vmc.offline", logging.INFO, reason=reason)
        for fn in list(self._state_listeners):
            try:
                fn(online, reason)
            except Exception:
                log.exception("vmc.state_listener_failed")
