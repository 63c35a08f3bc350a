"""The serial link to the cabinet control boards: one port, framing, acks, retransmits, reconnects.

Owns: the serial port (opened only through ``serial.serial_for_url``, so a device path, a pty,
``socket://host:port`` and pyserial test URLs all work), the request/response matching by
(address, SEQ), retransmission with an adaptive timeout, the POLL loop that fetches board events,
ACKs for pushed events, reconnecting after a disconnect, and the link counters for telemetry.

Must never: know what a vend, a slot or a sale is (that is ``board.py``), lay out bytes itself
(that is ``protocol.py``), spin (every wait is a blocking read or an Event/Condition with a
timeout), or let any byte stream from a board raise out of the reader thread.

Threads (all daemon, all stopped by ``close()``; the rx thread's reopen loop, the poll thread,
the callback thread and the frame reader are in ``link_parts.py``):

* ``rx``: opens the port, reads with a blocking timeout, feeds the codec, matches responses,
  ACKs pushed events, detects disconnects and reopens with backoff.
* ``poll``: sends POLL to each board (``LinkTiming.poll_idle`` apart, ``poll_busy`` while a
  ``fast_poll()`` block is active, ``probe_interval`` while a board does not answer).
* ``cb``: delivers events and state changes to the listeners, in order. Listeners run here, never
  on ``rx``, so a listener may call ``request()`` (e.g. re-IDENTIFY after BOARD_RESET).

Timing constants (defaults of ``LinkTiming``, from docs/serial-protocol.md section 5 unless noted):

* RTO as RFC 6298 (Karn's rule: only first transmissions are sampled), before the first sample
  250 ms, clamped to 25 ms .. 5 s; plus an allowance for the longest possible reply on the wire
  (247 bytes * 10 bits / baud: 21 ms at 115200, 257 ms at 9600), because SRTT is learned mostly
  from short POLL/ACK exchanges and a long IDENTIFY_REPLY must not look like a loss.
* The RTO doubles on each retransmission of the same frame (capped at 5 s); after 8
  transmissions ``LinkTimeout``. Worst case 0.25+0.5+1+2+4+5+5+5 = 22.75 s before any RTT
  sample, about 6.5 s with a learned RTO of 25 ms.
* POLL every 150 ms when idle (the spec suggests ~100 ms; 150 ms keeps an idle kiosk at under
  7 tiny exchanges a second and still shows a door event well within a human's reaction time),
  every 50 ms inside ``fast_poll()`` (a vend in progress: the VEND_RESULT is what the shopper is
  waiting for; entering it schedules the first POLL 50 ms on, not at once, so it does not delay
  the VEND). Right after a TX_REPLY that accepted a tx, the vend's own thread sends one POLL
  (board.py) and then ``poll_now``: a short tx's result is not left waiting for the next turn.
  A board that stopped answering is probed with a single POLL every 5 s (the spec's probe
  interval) instead of tying up the bus with full retransmit series.
* First contact: a board that has not answered since the port was (re)opened is probed every
  0.3 s (plus the RTO: about every 0.57 s before an RTT sample) for the first 10 s after the
  open, then every 5 s. One lost answer to the first probe then costs half a second, not 5 s
  (`kiosk board --connect-timeout 3` needs several tries within its 3 s); a board that never
  answers costs no more of the bus than idle polling would.
* Partial frame abandoned after 20 ms of line silence (spec 2.2). The idle read timeout is
  0.5 s: it only bounds how fast a closed link notices ``close()`` on transports without
  ``cancel_read``; it is not a polling period.
* Reopen after a disconnect: 0.2 s doubling to 5 s, each delay jittered to 75..125 %; the delay
  goes back to 0.2 s once a board has answered on the new port.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import serial

from kiosk.clock import Clock, SystemClock
from kiosk.hardware.link_parts import (
    BoardState,
    BoardStateListener,
    EventListener,
    FrameReader,
    LinkCounters,
    LinkError,
    Listeners,
    Poller,
    PortLike,
    PortSupervisor,
    StateListener,
    cancel_read,
)
from kiosk.hardware.protocol import (
    MAX_FRAME,
    Ack,
    BadLength,
    Command,
    ErrorCode,
    Frame,
    Message,
    Nak,
    Poll,
    ProtocolError,
    UnknownCommand,
    decode_message,
    encode,
    is_event,
    is_response,
)
from kiosk.log import log_event

__all__ = [  # re-exported from link_parts: EventListener, LinkError, PortLike, StateListener
    "EventListener",
    "LinkClosed",
    "LinkError",
    "LinkOffline",
    "LinkProtocolError",
    "LinkTimeout",
    "LinkTiming",
    "PortLike",
    "RttEstimator",
    "SerialLink",
    "StateListener",
]

log = logging.getLogger("kiosk.hardware.link")


class LinkOffline(LinkError):
    """The port is not open (unplugged, not yet reopened): nothing was sent, or a send failed."""


class LinkClosed(LinkOffline):
    """``close()`` was called."""


class LinkProtocolError(LinkError):
    """The board answered, but not with anything that fits the request (counted, logged).

    Not retransmitted: the board would answer the repeat from its cache with the same bytes.
    """


class LinkTimeout(LinkError):
    """No answer after the last retransmission. The board may or may not have executed it."""

    def __init__(self, address: int, command: int, transmissions: int) -> None:
        super().__init__(
            f"board {address}: no answer to 0x{command:02X} after {transmissions} transmissions"
        )
        self.address = address
        self.command = command
        self.transmissions = transmissions


@dataclass(frozen=True, slots=True)
class LinkTiming:
    """All timing constants of the link, in seconds (see the module docstring for the why)."""

    rto_initial: float = 0.25
    rto_min: float = 0.025
    rto_max: float = 5.0
    max_transmissions: int = 8
    poll_idle: float = 0.15
    poll_busy: float = 0.05
    probe_interval: float = 5.0
    probe_transmissions: int = 1
    contact_probe_interval: float = 0.3
    contact_window: float = 10.0
    interbyte_gap: float = 0.02
    idle_read_timeout: float = 0.5
    write_timeout: float = 1.0
    reconnect_min: float = 0.2
    reconnect_max: float = 5.0
    dump_interval: float = 5.0
    join_timeout: float = 2.0


class RttEstimator:
    """SRTT/RTTVAR per RFC 6298 (as docs/serial-protocol.md section 5 prescribes). Pure."""

    def __init__(self, initial: float = 0.25, lo: float = 0.025, hi: float = 5.0) -> None:
        self.initial = initial
        self.lo = lo
        self.hi = hi
        self.srtt: float | None = None
        self.rttvar = 0.0

    def sample(self, rtt: float) -> None:
        rtt = max(0.0, rtt)
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt

    @property
    def rto(self) -> float:
        if self.srtt is None:
            return min(max(self.initial, self.lo), self.hi)
        return min(max(self.srtt + 4 * self.rttvar, self.lo), self.hi)


# Which response codes answer which request (NAK answers anything).
_ANSWERS: dict[int, frozenset[int]] = {
    Command.PING: frozenset({Command.ACK}),
    Command.IDENTIFY: frozenset({Command.IDENTIFY_REPLY}),
    Command.STATUS: frozenset({Command.STATUS_REPLY}),
    Command.VEND: frozenset({Command.TX_REPLY}),
    Command.UNLOCK: frozenset({Command.TX_REPLY}),
    Command.TEST_SLOT: frozenset({Command.TX_REPLY}),
    Command.OUTCOME: frozenset({Command.OUTCOME_REPLY}),
    Command.RESET: frozenset({Command.ACK}),
    # Any event code in 0xC0..0xDF, also ones this version does not know, is a POLL answer
    # (decoding then fails and is counted, rather than being called a wrong sequence).
    Command.POLL: frozenset({Command.ACK, *range(0xC0, 0xE0)}),
}


class _Pending:
    """The one outstanding request: filled in by the rx thread, waited for by the requester."""

    __slots__ = ("address", "allowed", "command", "done", "error", "received_at", "response", "seq")

    def __init__(self, address: int, seq: int, command: int) -> None:
        self.address = address
        self.seq = seq
        self.command = command
        self.allowed = _ANSWERS[command] | {Command.NAK}
        self.done = threading.Event()
        self.response: Message | None = None
        self.error: LinkError | None = None
        self.received_at = 0.0


def _check_answer(frame: Frame, p: _Pending) -> tuple[Message | None, str | None]:
    """The answer ``frame`` carries to the request ``p``, or what is wrong with it."""
    if frame.command not in p.allowed:
        return None, f"0x{frame.command:02X} does not answer 0x{p.command:02X}"
    try:
        return decode_message(frame), None
    except ProtocolError as e:
        return None, f"undecodable answer: {e}"


def _nak_code(e: ProtocolError) -> ErrorCode:
    """The NAK error code for an event frame that does not decode."""
    if isinstance(e, UnknownCommand):
        return ErrorCode.UNKNOWN_COMMAND
    return ErrorCode.BAD_LENGTH if isinstance(e, BadLength) else ErrorCode.BAD_VALUE


def _default_port(url: str, baudrate: int, timing: LinkTiming) -> Callable[[], PortLike]:
    def open_port() -> PortLike:
        kwargs: dict[str, Any] = {
            "baudrate": baudrate,
            "timeout": timing.idle_read_timeout,
            "write_timeout": timing.write_timeout,
        }
        if "://" not in url:
            kwargs["exclusive"] = True  # a second `kiosk board` on a live port fails loudly
        port: PortLike = serial.serial_for_url(url, **kwargs)
        return port

    return open_port


class SerialLink:
    """Requests to the boards on one serial port; events and link state to listeners.

    ``request()`` is thread-safe; requests are serialized on the bus (one outstanding request at
    a time, as a half-duplex RS-485 bus needs). Call ``start()`` once, ``close()`` at the end.
    """

    def __init__(
        self,
        url: str,
        baudrate: int = 115200,
        *,
        addresses: Iterable[int] = (0,),
        on_event: EventListener | None = None,
        on_state: StateListener | None = None,
        poll_events: bool = True,
        timing: LinkTiming | None = None,
        clock: Clock | None = None,
        port_factory: Callable[[], PortLike] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.addresses: tuple[int, ...] = tuple(sorted(set(addresses)))
        if not self.addresses or any(not 0 <= a <= 0xFF for a in self.addresses):
            raise ValueError(f"board addresses must be 0..255, got {self.addresses}")
        self.timing = timing or LinkTiming()
        self.poll_events = poll_events
        self._clock: Clock = clock or SystemClock()
        self._open_port = port_factory or _default_port(url, baudrate, self.timing)
        self._rng = rng or random.Random()
        self._rtt = RttEstimator(self.timing.rto_initial, self.timing.rto_min, self.timing.rto_max)
        # Longest reply on the wire (spec: 8N1 = 10 bits a byte) on top of the learned RTO.
        self._wire_allowance = MAX_FRAME * 10 / max(baudrate, 1)

        self._listeners = Listeners(on_event, on_state)

        self._lock = threading.Lock()  # guards the fields below
        self._bus = threading.Lock()  # held for a whole request: one outstanding at a time
        self._write_lock = threading.Lock()  # whole frames, never interleaved bytes
        self._port: PortLike | None = None
        self._port_up = False
        self._online = False
        self._online_cond = threading.Condition(self._lock)
        self._last_error = "not started"
        self._pending: _Pending | None = None
        self._seq = {a: self._rng.randrange(256) for a in self.addresses}
        self._unanswered_poll: dict[int, int] = {}  # address -> SEQ of a POLL that timed out
        # address -> SEQs recently sent: a late answer to one of them is harmless, not a violation
        self._sent: dict[int, deque[int]] = {a: deque(maxlen=4) for a in self.addresses}
        self._last_event: dict[int, tuple[int, int, bytes]] = {}
        self._boards = dict.fromkeys(self.addresses, BoardState.UNKNOWN)

        self._c = LinkCounters()
        self._reader = FrameReader(self._clock, self.timing.dump_interval)
        self._stop = threading.Event()
        self._poller = Poller(self, self._clock, self._stop)
        self._supervisor = PortSupervisor(self, self._reader, self.timing, self._stop, self._rng)
        self._threads: list[threading.Thread] = []
        self._started = False
        self._closed = False

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        """Start the threads; the port is opened (and reopened) in the background."""
        with self._lock:
            if self._started:
                return
            self._started = True
        targets = [("rx", self._supervisor.run), ("cb", self._listeners.run)]
        if self.poll_events:
            targets.append(("poll", self._poller.run))
        for name, target in targets:
            t = threading.Thread(target=target, name=f"kiosk-link-{name}", daemon=True)
            self._threads.append(t)
            t.start()

    def close(self) -> None:
        """Stop the threads (joined with a timeout), fail a waiting request, close the port."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._last_error = "link closed"
            pending = self._pending
            port = self._port
            self._online_cond.notify_all()
        self._stop.set()
        self._poller.wake.set()
        if pending is not None:
            pending.error = LinkClosed("link closed")
            pending.done.set()
        cancel_read(port)
        self._listeners.stop()
        me = threading.current_thread()
        for t in self._threads:
            if t is not me:
                t.join(self.timing.join_timeout)
                if t.is_alive():
                    log_event(log, "link.thread_stuck", logging.WARNING, thread=t.name)
        with self._lock:
            port, self._port = self._port, None
            self._port_up = False
        if port is not None:
            with self._write_lock, contextlib.suppress(Exception):
                port.close()

    def __enter__(self) -> SerialLink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add_event_listener(self, fn: EventListener) -> None:
        """``fn(address, event)`` for every new event (called on the link's callback thread)."""
        self._listeners.add_event(fn)

    def add_state_listener(self, fn: StateListener) -> None:
        """``fn(online, reason)`` when the link comes up or goes down (callback thread)."""
        self._listeners.add_state(fn)

    def add_board_state_listener(self, fn: BoardStateListener) -> None:
        """``fn(address, online, reason)`` when one board starts/stops answering."""
        self._listeners.add_board(fn)

    @property
    def online(self) -> bool:
        """The port is open and a board has answered since it was (re)opened."""
        with self._lock:
            return self._online

    @property
    def port_open(self) -> bool:
        with self._lock:
            return self._port_up

    @property
    def last_error(self) -> str:
        """Why the link is (or last was) not online, for people."""
        with self._lock:
            return self._last_error

    def board_answering(self, address: int) -> bool | None:
        """True: answered last time; False: ran out of retransmissions; None: not heard yet."""
        with self._lock:
            state = self._boards.get(address, BoardState.UNKNOWN)
            if not self._port_up:
                return False
        return {BoardState.ANSWERING: True, BoardState.SILENT: False}.get(state)

    def wait_online(self, timeout: float) -> bool:
        """Block until a board answered on an open port (or ``timeout``); return ``online``."""
        with self._online_cond:
            self._online_cond.wait_for(lambda: self._online or self._closed, timeout)
            return self._online

    def counters(self) -> dict[str, int]:
        """Link statistics for telemetry (cumulative over reconnects)."""
        with self._lock:
            out = self._c.as_dict()
            out.update(self._reader.counters())
            out["rto_ms"] = round(self._rtt.rto * 1000)
            out["srtt_ms"] = round((self._rtt.srtt or 0.0) * 1000)
        return out

    @contextlib.contextmanager
    def fast_poll(self, address: int) -> Iterator[None]:
        """Poll ``address`` at ``poll_busy`` while the block runs (e.g. a vend in progress)."""
        with self._poller.fast(address):
            yield

    def poll_now(self, address: int) -> None:
        """POLL ``address`` as soon as the bus is free instead of at its next turn."""
        self._poller.now(address)

    def request(self, address: int, msg: Message, *, transmissions: int | None = None) -> Message:
        """Send ``msg`` to board ``address`` and return its answer (reply, ``Ack`` or ``Nak``).

        Retransmits the identical frame on timeout (the board answers duplicates from its cache).
        A POLL answered with an event also hands the event to the event listeners.
        Raises LinkOffline (port not open / failed), LinkTimeout (no answer), LinkClosed,
        LinkProtocolError (the board answered with something that does not fit).
        """
        return self.request_counted(address, msg, transmissions=transmissions)[0]

    def request_counted(
        self, address: int, msg: Message, *, transmissions: int | None = None
    ) -> tuple[Message, int]:
        """Like `request`, and also say how many times the frame went out.

        The count matters when the answer is a NAK: it proves only that the copy it answers did
        not run. An earlier copy may have run before a board reboot wiped the duplicate cache.
        """
        if msg.CODE not in _ANSWERS:
            raise ValueError(f"{type(msg).__name__} is not a request")
        if address not in self._seq:
            raise ValueError(f"board {address} is not on this link {self.addresses}")
        limit = max(1, transmissions or self.timing.max_transmissions)
        with self._bus:
            if not isinstance(msg, Poll):
                self._finish_unanswered_poll(address, limit)
            answer, sends = self._exchange(address, msg, limit)
        if isinstance(msg, Poll) and is_event(answer.CODE):
            self._dispatch_event(address, answer)
        return answer, sends

    # ------------------------------------------------------------------ request machinery

    def _finish_unanswered_poll(self, address: int, limit: int) -> None:
        """Spec 6.2: after a POLL went unanswered, ask it again (same SEQ) before anything else.

        A board treats a new SEQ as "the host has the event" and drops it, so any other request
        sent first would lose the event the lost answer carried.
        """
        with self._lock:
            pending_poll = address in self._unanswered_poll
        if not pending_poll:
            return
        answer, _ = self._exchange(address, Poll(), limit)
        if is_event(answer.CODE):
            self._dispatch_event(address, answer)

    def _exchange(self, address: int, msg: Message, limit: int) -> tuple[Message, int]:
        with self._lock:
            if self._closed:
                raise LinkClosed("link closed")
            if not self._port_up:
                raise LinkOffline(f"port {self.url} is not open: {self._last_error}")
            reuse = self._unanswered_poll.pop(address, None)
            if isinstance(msg, Poll) and reuse is not None:
                # The lost answer may hold an event the board drops once it sees a new SEQ
                # (spec 6.2), so ask again with the very same frame.
                seq = reuse
            else:
                seq = self._seq[address] = (self._seq[address] + 1) & 0xFF
            pending = _Pending(address, seq, msg.CODE)
            self._pending = pending
            self._sent[address].append(seq)
            rto = self._rtt.rto + self._wire_allowance
            self._c.requests += 1
            if isinstance(msg, Poll):
                self._c.polls += 1
        try:
            sends, sent_at = self._transmit(encode(address, seq, msg), pending, rto, limit)
        finally:
            with self._lock:
                if self._pending is pending:
                    self._pending = None
        if pending.error is not None:
            raise pending.error
        if pending.response is None:
            self._on_silence(address, msg, seq, sends)
            raise LinkTimeout(address, msg.CODE, sends)
        with self._lock:
            if sends == 1:  # Karn: a retransmitted request gives no trustworthy sample
                self._rtt.sample(pending.received_at - sent_at)
        if isinstance(pending.response, Nak):
            with self._lock:
                self._c.naks_received += 1
        return pending.response, sends

    def _transmit(self, frame: bytes, p: _Pending, rto: float, limit: int) -> tuple[int, float]:
        """Send ``frame`` until ``p`` is answered, at most ``limit`` times, doubling the RTO
        each time (capped); how often it went out and when it last did."""
        sent_at = 0.0
        sends = 0
        while sends < limit:
            if sends:
                with self._lock:
                    self._c.retransmits += 1
            sent_at = self._clock.monotonic()
            self._write(frame)
            sends += 1
            if p.done.wait(rto):
                break
            rto = min(rto * 2, self.timing.rto_max + self._wire_allowance)
        return sends, sent_at

    def _on_silence(self, address: int, msg: Message, seq: int, sends: int) -> None:
        with self._lock:
            self._c.timeouts += 1
            if isinstance(msg, Poll):
                self._unanswered_poll[address] = seq
            was = self._boards.get(address)
            self._boards[address] = BoardState.SILENT
            reason = f"board {address}: no answer after {sends} transmissions"
            all_silent = all(s is BoardState.SILENT for s in self._boards.values())
            went_down = all_silent and self._online
            if went_down:
                self._online = False
                self._last_error = reason
        level = logging.DEBUG if was is BoardState.SILENT else logging.WARNING  # probes: quiet
        log_event(log, "link.timeout", level, address=address, cmd=msg.CODE.name, sends=sends)
        if was is not BoardState.SILENT:
            self._listeners.board(address, False, reason)
        if went_down:
            self._listeners.state(False, reason)

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            with self._lock:
                port = self._port if self._port_up else None
                reason = self._last_error
            if port is None:
                raise LinkOffline(f"port {self.url} is not open: {reason}")
            try:
                port.write(data)
            except Exception as e:  # pyserial raises odd types from a vanishing fd, too
                self._port_failed(f"write failed: {e}")
                raise LinkOffline(f"port {self.url}: write failed: {e}") from e
            with self._lock:
                self._c.frames_sent += 1
                self._c.bytes_sent += len(data)

    # ------------------------------------------------------------------ rx thread

    def _open_failed(self, e: Exception) -> None:
        reason = f"cannot open {self.url}: {e}"
        with self._lock:
            changed = self._last_error != reason
            self._last_error = reason
        if changed:
            log_event(log, "link.open_failed", logging.WARNING, url=self.url, error=str(e))

    def _reopened(self) -> None:
        with self._lock:
            self._c.reconnects += 1

    def _install(self, port: PortLike) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._port = port
            self._port_up = True
            self._last_error = "port open, no board has answered yet"
            self._reader.reset()
            self._last_event.clear()
            self._unanswered_poll.clear()
            for a in self.addresses:
                self._boards[a] = BoardState.UNKNOWN
        self._poller.restart()
        log_event(log, "link.port_open", url=self.url, baud=self.baudrate)
        return True

    def _uninstall(self, port: PortLike) -> None:
        with self._write_lock:  # never close the fd under a write in progress
            with self._lock:
                if self._port is port:
                    self._port = None
            with contextlib.suppress(Exception):
                port.close()

    def _port_failed(self, reason: str) -> None:
        """The port broke (unplugged, pty closed): go offline, fail the waiting request."""
        with self._lock:
            if not self._port_up:
                return
            self._port_up = False
            self._c.disconnects += 1
            self._last_error = reason
            pending = self._pending
            port = self._port
            was_online, self._online = self._online, False
            answering = [a for a, s in self._boards.items() if s is BoardState.ANSWERING]
            for a in self.addresses:
                self._boards[a] = BoardState.UNKNOWN
        if pending is not None:
            pending.error = LinkOffline(f"port {self.url}: {reason}")
            pending.done.set()
        cancel_read(port)
        log_event(log, "link.port_lost", logging.WARNING, url=self.url, reason=reason)
        for a in answering:
            self._listeners.board(a, False, reason)
        if was_online:
            self._listeners.state(False, reason)

    # ------------------------------------------------------------------ receive path

    def _receive(self, data: bytes) -> None:
        """Bytes from the port. Never raises: line noise and bad frames are counted."""
        with self._lock:
            self._c.bytes_received += len(data)
        frames, garbage = self._reader.feed(data)
        if garbage:
            self._reader.dump("garbage", None)
        self._handle_frames(frames)

    def _handle_frames(self, frames: list[Frame]) -> None:
        for frame in frames:
            try:
                self._handle_frame(frame)
            except Exception:  # a bug here must cost one frame, not the rx thread
                log.exception("link.frame_handler_failed")
                self._violation("frame handler failed", frame)

    def _line_idle(self) -> None:
        """No byte for ``interbyte_gap`` with a partial frame buffered: it is garbage (spec 2.2)."""
        frames = self._reader.line_idle()
        self._reader.dump("partial frame abandoned", None)
        self._handle_frames(frames)

    def _handle_frame(self, frame: Frame) -> None:
        now = self._clock.monotonic()
        with self._lock:
            self._c.frames_received += 1
            p = self._pending
            match = (
                p is not None
                and not p.done.is_set()
                and frame.address == p.address
                and frame.seq == p.seq
            )
            late = frame.seq in self._sent.get(frame.address, ())
        if frame.address not in self._boards:
            self._violation(f"frame from unknown address {frame.address}", frame)
            return
        if match and p is not None:
            p.response, problem = _check_answer(frame, p)
            if problem is not None:
                self._violation(problem, frame)
                p.error = LinkProtocolError(f"board {frame.address}: {problem}")
            p.received_at = now
            self._heard(frame.address)
            p.done.set()
            return
        if is_event(frame.command):
            self._pushed_event(frame)
            return
        if is_response(frame.command) or frame.command in (Command.ACK, Command.NAK):
            if late:
                # The answer to a retransmission of a request already answered: harmless.
                with self._lock:
                    self._c.late_responses += 1
                return
            self._violation("answer with an unexpected sequence number", frame)
            return
        self._violation(f"board sent command code 0x{frame.command:02X}", frame)

    def _pushed_event(self, frame: Frame) -> None:
        """An event outside a POLL (push mode): ACK it, NAK it if undecodable, drop repeats."""
        try:
            msg = decode_message(frame)
        except ProtocolError as e:
            self._violation(f"undecodable event: {e}", frame)
            nak = Nak(_nak_code(e), frame.command)
            self._send_quietly(encode(frame.address, frame.seq, nak))
            return
        self._send_quietly(encode(frame.address, frame.seq, Ack()))
        self._heard(frame.address)
        key = (frame.seq, frame.command, frame.payload)
        with self._lock:
            repeat = self._last_event.get(frame.address) == key
            self._last_event[frame.address] = key
            if repeat:
                self._c.duplicate_events += 1
        if not repeat:
            self._dispatch_event(frame.address, msg)

    def _send_quietly(self, data: bytes) -> None:
        with contextlib.suppress(LinkError):
            self._write(data)

    def _heard(self, address: int) -> None:
        with self._lock:
            was = self._boards.get(address)
            self._boards[address] = BoardState.ANSWERING
            came_up = not self._online and self._port_up
            if came_up:
                self._online = True
                self._last_error = ""
                self._online_cond.notify_all()
        self._supervisor.answered()
        if was is not BoardState.ANSWERING:
            self._listeners.board(address, True, f"board {address} answered")
        if came_up:
            log_event(log, "link.online", url=self.url, address=address)
            self._listeners.state(True, f"board {address} answered on {self.url}")

    def _violation(self, what: str, frame: Frame | None) -> None:
        with self._lock:
            self._c.protocol_violations += 1
        self._reader.dump(what, frame)

    # ------------------------------------------------------------------ poll thread

    def _board_state(self, address: int) -> BoardState:
        with self._lock:
            return self._boards[address]

    # ------------------------------------------------------------------ callbacks

    def _dispatch_event(self, address: int, event: Message) -> None:
        with self._lock:
            self._c.events += 1
        log_event(log, "link.event", logging.DEBUG, address=address, kind=type(event).__name__)
        self._listeners.event(address, event)
