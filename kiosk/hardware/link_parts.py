"""The parts of the serial link (kiosk/hardware/link.py) that stand on their own.

``SerialLink`` keeps what needs its one lock: the port, the outstanding request and its
retransmissions, the receive path that matches answers to it, and the link and board states.
Here, each with its own small state:

* ``PortSupervisor``: the rx thread's outer loop: open the port, serve it until it breaks,
  reopen after a jittered, doubling delay (back to the minimum once a board answered).
* ``FrameReader``: the frame decoder and the bytes recently received, its counters kept across
  reopens, and the rate-limited hex dump of bad input.
* ``Poller``: the poll thread: POLL each board when it is due (idle, busy inside
  ``fast_poll()``, or a probe while it is silent).
* ``Listeners``: the callback thread: events and state changes to the listeners, in order.
* ``BoardState``: what the link knows of one board.

Must never: block the rx thread on a listener, or let one failing listener, poll or bad frame
end a thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import logging
import queue
import random
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from kiosk.clock import Clock
from kiosk.hardware.protocol import (
    Frame,
    FrameDecoder,
    Message,
    Poll,
    ProtocolError,
    encode_frame,
    is_event,
)
from kiosk.log import log_event

__all__ = [
    "BoardState",
    "BoardStateListener",
    "EventListener",
    "FrameReader",
    "LinkCounters",
    "LinkError",
    "Listeners",
    "PollSide",
    "Poller",
    "PortLike",
    "PortSupervisor",
    "RxSide",
    "StateListener",
    "cancel_read",
]

log = logging.getLogger("kiosk.hardware.link")

EventListener = Callable[[int, Message], None]
"""``(address, event)``: an event message from the board at ``address``."""
StateListener = Callable[[bool, str], None]
"""``(online, reason)``: the link as a whole came up (a board answered) or went down."""
BoardStateListener = Callable[[int, bool, str], None]
"""``(address, online, reason)``: one board started or stopped answering."""


class PortLike(Protocol):
    """What the link uses of a pyserial port (also implemented by test fakes)."""

    timeout: float | None

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...

    def close(self) -> None: ...


class LinkError(Exception):
    """The request could not be completed on the link."""


class BoardState(enum.Enum):
    UNKNOWN = "unknown"  # port just (re)opened, not heard yet
    ANSWERING = "answering"
    SILENT = "silent"  # last request ran out of transmissions


@dataclass(slots=True)
class LinkCounters:
    frames_sent: int = 0
    frames_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    requests: int = 0
    polls: int = 0
    retransmits: int = 0
    timeouts: int = 0
    late_responses: int = 0
    naks_received: int = 0
    events: int = 0
    duplicate_events: int = 0
    protocol_violations: int = 0
    disconnects: int = 0
    reconnects: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class RxSide(Protocol):
    """What the rx thread needs of the link (SerialLink's own methods)."""

    @property
    def port_open(self) -> bool: ...

    def _open_port(self) -> PortLike: ...
    def _open_failed(self, e: Exception) -> None: ...
    def _reopened(self) -> None: ...
    def _install(self, port: PortLike) -> bool: ...
    def _uninstall(self, port: PortLike) -> None: ...
    def _port_failed(self, reason: str) -> None: ...
    def _receive(self, data: bytes) -> None: ...
    def _line_idle(self) -> None: ...


class PortSupervisor:
    """The rx thread: open the port, ``install`` it on the link, read it until it breaks,
    ``uninstall`` it; then wait ``reconnect_min`` doubling to ``reconnect_max``, each delay
    jittered to 75..125 %, and open it again. The delay starts over once a board answered on
    the last port (``answered()``). Reads block with a timeout: ``interbyte_gap`` while part
    of a frame is buffered (then silence means the partial frame is garbage), else
    ``idle_read_timeout``."""

    def __init__(
        self,
        link: RxSide,
        reader: FrameReader,
        timing: Any,  # kiosk.hardware.link.LinkTiming
        stop: threading.Event,
        rng: random.Random,
    ) -> None:
        self._link = link
        self._reader = reader
        self.timing = timing
        self._stop = stop
        self._rng = rng
        self._answered = threading.Event()

    def answered(self) -> None:
        """A board answered on the current port."""
        self._answered.set()

    def run(self) -> None:
        delay = self.timing.reconnect_min
        opened_before = False
        link = self._link
        while not self._stop.is_set():
            port = self._try_open()
            if port is not None:
                if opened_before:
                    link._reopened()
                opened_before = True
                if link._install(port):
                    try:
                        self._read_loop(port)
                    except Exception as e:  # belt and braces: the rx thread must not die
                        log.exception("link.rx_failed")
                        link._port_failed(f"receive failed: {e}")
                link._uninstall(port)
                if self._answered.is_set():
                    self._answered.clear()
                    delay = self.timing.reconnect_min
            if self._stop.is_set():
                break
            jittered = delay * (0.75 + 0.5 * self._rng.random())
            self._stop.wait(jittered)
            delay = min(delay * 2, self.timing.reconnect_max)

    def _try_open(self) -> PortLike | None:
        try:
            return self._link._open_port()
        except Exception as e:  # any failure to open is "not there yet": retry with backoff
            self._link._open_failed(e)
            return None

    def _read_loop(self, port: PortLike) -> None:
        timing = self.timing
        link = self._link
        current_timeout: float | None = None
        while not self._stop.is_set():
            if not link.port_open:
                return
            partial = self._reader.partial()
            want = timing.interbyte_gap if partial else timing.idle_read_timeout
            try:
                if want != current_timeout:
                    port.timeout = want
                    current_timeout = want
                data = port.read(max(1, port.in_waiting))
            except Exception as e:  # whatever the transport raises, the answer is to reopen
                link._port_failed(f"read failed: {e}")
                return
            if data:
                link._receive(data)
            elif partial:
                link._line_idle()


def cancel_read(port: PortLike | None) -> None:
    """Wake a read blocked on ``port`` (pyserial ports that can; others time out)."""
    cancel = getattr(port, "cancel_read", None)
    if cancel is not None:
        with contextlib.suppress(Exception):
            cancel()


class FrameReader:
    """Bytes in, frames out: the decoder (a fresh one per port), the last 64 bytes received
    for the hex dumps, and the decoder's counters summed over every port opened. Its own lock:
    the rx thread feeds it, ``counters()`` reads it from any thread."""

    _KEYS = ("crc_errors", "resyncs", "bytes_discarded", "oversize")

    def __init__(self, clock: Clock, dump_interval: float) -> None:
        self._clock = clock
        self._dump_interval = dump_interval
        self._lock = threading.Lock()
        self._decoder = FrameDecoder()
        self._base = dict.fromkeys(self._KEYS, 0)
        self._recent_rx: deque[int] = deque(maxlen=64)
        self._last_dump = -1e9
        self._suppressed_dumps = 0

    def reset(self) -> None:
        """A new port: a fresh decoder, its predecessor's counts kept."""
        with self._lock:
            for key in self._KEYS:
                self._base[key] += int(getattr(self._decoder, key))
            self._decoder = FrameDecoder()

    def partial(self) -> bool:
        """Part of a frame is buffered (the next read waits only for the interbyte gap)."""
        with self._lock:
            return self._decoder.buffered > 0

    def feed(self, data: bytes) -> tuple[list[Frame], bool]:
        """The frames completed by ``data``, and whether bytes were discarded as garbage."""
        with self._lock:
            self._recent_rx.extend(data)
            dec = self._decoder
            before = dec.bytes_discarded
            dec.feed(data)
            return list(dec.frames()), dec.bytes_discarded != before

    def line_idle(self) -> list[Frame]:
        """The line went quiet mid-frame: give up the partial frame (spec 2.2)."""
        with self._lock:
            dec = self._decoder
            while dec.buffered and not dec.pending:
                dec.timeout()
            return list(dec.frames())

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {k: base + int(getattr(self._decoder, k)) for k, base in self._base.items()}

    def dump(self, what: str, frame: Frame | None) -> None:
        """Log what went wrong with a hex dump, at most once per ``dump_interval``."""
        now = self._clock.monotonic()
        with self._lock:
            if now - self._last_dump < self._dump_interval:
                self._suppressed_dumps += 1
                return
            self._last_dump = now
            suppressed, self._suppressed_dumps = self._suppressed_dumps, 0
            recent = bytes(self._recent_rx).hex(" ")
        fields: dict[str, Any] = {"what": what, "recent_rx": recent, "suppressed": suppressed}
        if frame is not None:
            with contextlib.suppress(ProtocolError, ValueError):
                fields["frame"] = encode_frame(frame).hex(" ")
        log_event(log, "link.bad_input", logging.WARNING, **fields)


class PollSide(Protocol):
    """What the poll thread needs of the link."""

    addresses: tuple[int, ...]
    timing: Any  # kiosk.hardware.link.LinkTiming

    @property
    def port_open(self) -> bool: ...

    def request(
        self, address: int, msg: Message, *, transmissions: int | None = None
    ) -> Message: ...

    def _board_state(self, address: int) -> BoardState: ...


class Poller:
    """The poll thread: POLL each board of ``link`` when it is due, ``poll_idle`` apart,
    ``poll_busy`` inside ``fast()``, every ``probe_interval`` (with ``probe_transmissions``)
    while it is silent (every ``contact_probe_interval`` while it has not answered since the
    port opened, for ``contact_window``), and at once again when it answered with an event (it
    may hold more).
    Requests that fail are the link's business (counted, logged there)."""

    def __init__(self, link: PollSide, clock: Clock, stop: threading.Event) -> None:
        self._link = link
        self.addresses = link.addresses
        self._clock = clock
        self._stop = stop
        self.timing = link.timing
        self.wake = threading.Event()
        self._lock = threading.Lock()
        self._next_poll = dict.fromkeys(self.addresses, 0.0)
        self._fast: dict[int, int] = dict.fromkeys(self.addresses, 0)
        self._opened_at = clock.monotonic()
        self._heard: set[int] = set()  # boards that answered a POLL since the port opened

    def restart(self) -> None:
        """A port was (re)opened: poll every board now (first contact: probe them quickly)."""
        with self._lock:
            self._opened_at = self._clock.monotonic()
            self._heard.clear()
            for a in self.addresses:
                self._next_poll[a] = 0.0
        self.wake.set()

    def now(self, address: int) -> None:
        """POLL ``address`` as soon as the bus is free (its result may be waiting already)."""
        with self._lock:
            self._next_poll[address] = 0.0
        self.wake.set()

    @contextlib.contextmanager
    def fast(self, address: int) -> Iterator[None]:
        # Not a POLL at once: it would only delay the request the block is about to send (a
        # VEND); the next one is due within poll_busy, or sooner through `now()`.
        soon = self._clock.monotonic() + self.timing.poll_busy
        with self._lock:
            self._fast[address] = self._fast.get(address, 0) + 1
            self._next_poll[address] = min(self._next_poll[address], soon)
        self.wake.set()
        try:
            yield
        finally:
            with self._lock:
                self._fast[address] -= 1

    def run(self) -> None:
        while not self._stop.is_set():
            now = self._clock.monotonic()
            due: list[int] = []
            wait = self.timing.idle_read_timeout * 10
            port_up = self._link.port_open
            with self._lock:
                for a in self.addresses:
                    left = self._next_poll[a] - now
                    if left <= 0:
                        due.append(a)
                    else:
                        wait = min(wait, left)
            if not port_up:
                self.wake.wait()  # set by restart() and the link's close()
                self.wake.clear()
                continue
            for a in due:
                if self._stop.is_set():
                    return
                try:
                    self._poll_once(a)
                except Exception:  # a bug must not end polling for good
                    log.exception("link.poll_failed")
                    self._stop.wait(self.timing.poll_idle)
            if not due:
                self.wake.wait(wait)
                self.wake.clear()

    def _poll_once(self, address: int) -> None:
        attempts = (
            self.timing.max_transmissions
            if self._link._board_state(address) is BoardState.ANSWERING
            else self.timing.probe_transmissions
        )
        more = False
        answered = False
        try:
            answer = self._link.request(address, Poll(), transmissions=attempts)
            more = is_event(answer.CODE)  # the board may hold more: ask again at once
            answered = True
        except LinkError:
            pass
        state = self._link._board_state(address)
        now = self._clock.monotonic()
        with self._lock:
            if answered:
                self._heard.add(address)
            first_contact = (
                address not in self._heard and now - self._opened_at < self.timing.contact_window
            )
            if more:
                interval = 0.0
            elif state is BoardState.SILENT and first_contact:
                interval = self.timing.contact_probe_interval
            elif state is BoardState.SILENT:
                interval = self.timing.probe_interval
            elif self._fast.get(address):
                interval = self.timing.poll_busy
            else:
                interval = self.timing.poll_idle
            self._next_poll[address] = now + interval


class Listeners:
    """The listeners and the callback thread that calls them, in order (never on the rx
    thread, so a listener may make requests on the link)."""

    def __init__(
        self, on_event: EventListener | None = None, on_state: StateListener | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._event: list[EventListener] = [on_event] if on_event else []
        self._state: list[StateListener] = [on_state] if on_state else []
        self._board: list[BoardStateListener] = []
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()

    def add_event(self, fn: EventListener) -> None:
        with self._lock:
            self._event.append(fn)

    def add_state(self, fn: StateListener) -> None:
        with self._lock:
            self._state.append(fn)

    def add_board(self, fn: BoardStateListener) -> None:
        with self._lock:
            self._board.append(fn)

    def event(self, address: int, event: Message) -> None:
        with self._lock:
            listeners = list(self._event)
        for fn in listeners:
            self._jobs.put(functools.partial(fn, address, event))

    def state(self, online: bool, reason: str) -> None:
        with self._lock:
            listeners = list(self._state)
        for fn in listeners:
            self._jobs.put(functools.partial(fn, online, reason))

    def board(self, address: int, online: bool, reason: str) -> None:
        with self._lock:
            listeners = list(self._board)
        for fn in listeners:
            self._jobs.put(functools.partial(fn, address, online, reason))

    def stop(self) -> None:
        """The callback thread ends after the calls already queued."""
        self._jobs.put(None)

    def run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                log.exception("link.listener_failed")
