"""pyserial port for `emu://NAME`: the kiosk side of an in-process board emulator wire.

Owns: a pyserial-compatible port object (read with timeout, write, in_waiting, buffers) over an
`InProcessTransport` registered by name in this process. It must never hold protocol logic; on
unplug its reads and writes raise SerialException, like a pulled USB adapter.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from typing import Any

from serial.serialutil import PortNotOpenError, SerialBase, SerialException


# pyserial has no type stubs, so SerialBase is Any to mypy (subclassing Any is an error)
class Serial(SerialBase):  # type: ignore[misc]
    """`serial.serial_for_url("emu://board0", baudrate=115200, timeout=1)`."""

    is_open: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._rx = bytearray()
        self._cond = threading.Condition()
        self._broken = False
        self._cancel = False
        self._transport: Any = None
        super().__init__(*args, **kwargs)

    def open(self) -> None:
        if self.is_open:
            raise SerialException("Port is already open.")
        if self._port is None:
            raise SerialException("Port must be configured before it can be used.")
        parts = urllib.parse.urlsplit(self._port)
        if parts.scheme != "emu" or not parts.netloc:
            raise SerialException(f"expected emu://NAME, got {self._port!r}")
        from kiosk.sim.emulator_transports import lookup_inprocess

        transport = lookup_inprocess(parts.netloc)
        if transport is None:
            raise SerialException(f"could not open port {self._port}: no such emulator")
        with self._cond:
            self._rx.clear()
            self._broken = False
        transport.attach(self)
        self._transport = transport
        self.is_open = True

    def close(self) -> None:
        if self._transport is not None:
            self._transport.detach(self)
            self._transport = None
        with self._cond:
            self.is_open = False
            self._cond.notify_all()

    def _reconfigure_port(self) -> None:
        pass  # baud rate and framing: the emulator paces at its own configured baud

    # -- called by the transport ------------------------------------------------

    def deliver(self, data: bytes) -> None:
        with self._cond:
            self._rx += data
            self._cond.notify_all()

    def disconnect(self) -> None:
        with self._cond:
            self._broken = True
            self._cond.notify_all()

    # -- pyserial API -------------------------------------------------------------

    @property
    def in_waiting(self) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        with self._cond:
            if self._broken:
                raise SerialException("device disconnected")
            return len(self._rx)

    def read(self, size: int = 1) -> bytes:
        if not self.is_open:
            raise PortNotOpenError()
        timeout = self._timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._cancel = False
            while len(self._rx) < size:
                if self._broken:
                    raise SerialException("read failed: device disconnected")
                if not self.is_open or self._cancel:
                    break
                if deadline is None:
                    self._cond.wait()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            data = bytes(self._rx[:size])
            del self._rx[:size]
            return data

    def write(self, data: bytes) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        with self._cond:
            if self._broken:
                raise SerialException("write failed: device disconnected")
        raw = bytes(data)
        self._transport.from_host(raw)
        return len(raw)

    def flush(self) -> None:
        pass

    def reset_input_buffer(self) -> None:
        if not self.is_open:
            raise PortNotOpenError()
        with self._cond:
            self._rx.clear()

    def reset_output_buffer(self) -> None:
        if not self.is_open:
            raise PortNotOpenError()

    @property
    def out_waiting(self) -> int:
        return 0

    def cancel_read(self) -> None:
        with self._cond:
            self._cancel = True
            self._cond.notify_all()

    def cancel_write(self) -> None:
        pass

    def _update_break_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass

    def _update_dtr_state(self) -> None:
        pass

    @property
    def cts(self) -> bool:
        return True

    @property
    def dsr(self) -> bool:
        return True

    @property
    def ri(self) -> bool:
        return False

    @property
    def cd(self) -> bool:
        return True
