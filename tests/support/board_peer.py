"""A minimal board peer on a real OS pty, built on the codec (not the board emulator), and the
scaled-down link timing the unit tests share.

The peer (``PtyPeer``) answers IDENTIFY / STATUS / PING / VEND / UNLOCK / TEST_SLOT / OUTCOME /
POLL per docs/serial-protocol.md, keeps the duplicate cache and the outcome memory, and has a
few fault knobs. It is not the board emulator (kiosk/sim), which the link tests must not depend
on. Used by tests/unit/test_link.py and tests/unit/test_board.py.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kiosk.hardware.link import LinkTiming
from kiosk.hardware.protocol import (
    Ack,
    CabinetKind,
    Command,
    ErrorCode,
    Frame,
    FrameDecoder,
    Identify,
    IdentifyFlags,
    IdentifyReply,
    Message,
    Nak,
    Outcome,
    OutcomeQuery,
    OutcomeReply,
    Ping,
    Poll,
    SlotGroup,
    Status,
    StatusReply,
    TestSlot,
    TxReply,
    UnlockRequest,
    VendRequest,
    VendResult,
    WireSlotKind,
    decode_message,
    encode,
)

# Scaled-down timing: same algorithm, short waits (bellows style).
FAST = LinkTiming(
    rto_initial=0.05,
    rto_min=0.02,
    rto_max=0.2,
    max_transmissions=4,
    poll_idle=0.05,
    poll_busy=0.02,
    probe_interval=0.2,
    reconnect_min=0.05,
    reconnect_max=0.2,
    idle_read_timeout=0.2,
    dump_interval=0.0,
)
WAIT = 15.0  # generous upper bound for anything that should happen "soon" (CI is a loaded box)


# --------------------------------------------------------------------------- the board peer


@dataclass
class PeerBoard:
    """State and fault knobs of one simulated board address."""

    address: int
    slots: dict[int, WireSlotKind] = field(
        default_factory=lambda: {
            **dict.fromkeys(range(10), WireSlotKind.SPIRAL),
            **dict.fromkeys(range(10, 12), WireSlotKind.LOCKER),
        }
    )
    identified: bool = False
    identify_count: int = 0
    outcomes: dict[int, tuple[int, int, Outcome]] = field(default_factory=dict)
    executions: collections.Counter[int] = field(default_factory=collections.Counter)
    events: collections.deque[Message] = field(default_factory=collections.deque)
    handed_out: bool = False  # events[0] was the answer to the last POLL
    last: tuple[int, int, bytes] | None = None
    last_reply: bytes = b""
    received: list[Frame] = field(default_factory=list)
    # knobs
    silent: bool = False
    drop_requests: collections.Counter[int] = field(default_factory=collections.Counter)
    drop_replies: collections.Counter[int] = field(default_factory=collections.Counter)
    complete_vends: bool = True
    lose_vend_results: bool = False
    service_door_open: bool = False  # what STATUS reports
    garbage: Callable[[], bytes] | None = None  # bytes written before every reply
    # called with each request after it was handled (and before its reply may be dropped)
    after_request: Callable[[PeerBoard, Frame], None] | None = None
    accepted: threading.Event = field(default_factory=threading.Event)

    def commands(self, cmd: int) -> int:
        return sum(1 for f in self.received if f.command == cmd)

    def reboot(self, memory_kept: bool = True, interrupted_tx: int = 0) -> None:
        from kiosk.hardware.protocol import BoardReset, ResetReason

        self.identified = False
        self.events.clear()
        self.handed_out = False
        self.last = None
        self.events.append(BoardReset(ResetReason.WATCHDOG, memory_kept, interrupted_tx))

    def finish(self, tx: int, outcome: Outcome) -> None:
        cmd, slot, _ = self.outcomes[tx]
        self.outcomes[tx] = (cmd, slot, outcome)
        if not self.lose_vend_results:
            self.events.append(VendResult(tx, slot, outcome))

    # --- request handling (runs on the peer thread)

    def handle(self, frame: Frame) -> bytes | None:
        self.received.append(frame)
        if self.silent:
            return None
        if self.drop_requests[frame.command] > 0:
            self.drop_requests[frame.command] -= 1
            return None
        key = (frame.seq, frame.command, frame.payload)
        if key == self.last:
            reply = self.last_reply
        else:
            if self.handed_out:  # a new request: the event handed out by POLL is delivered
                self.events.popleft()
                self.handed_out = False
            reply = self._execute(frame)
            self.last, self.last_reply = key, reply
        if self.after_request is not None:
            self.after_request(self, frame)
        if self.drop_replies[frame.command] > 0:
            self.drop_replies[frame.command] -= 1
            return None
        return (self.garbage() if self.garbage else b"") + reply

    def _execute(self, frame: Frame) -> bytes:
        a, seq = self.address, frame.seq
        try:
            msg = decode_message(frame)
        except Exception:
            return encode(a, seq, Nak(ErrorCode.BAD_LENGTH, frame.command))
        if isinstance(msg, Identify):
            self.identified = True
            self.identify_count += 1
            return encode(a, seq, self.identify_reply())
        if isinstance(msg, Ping):
            return encode(a, seq, Ack())
        if isinstance(msg, Status):
            return encode(
                a,
                seq,
                StatusReply(
                    busy=False, service_door_open=self.service_door_open, temperature_dc=45
                ),
            )
        if isinstance(msg, Poll):
            if self.events:
                self.handed_out = True
                return encode(a, seq, self.events[0])
            return encode(a, seq, Ack())
        if isinstance(msg, OutcomeQuery):
            rec = self.outcomes.get(msg.tx)
            if rec is None:
                return encode(a, seq, OutcomeReply(msg.tx, 0xFFFF, Outcome.UNKNOWN_TX))
            return encode(a, seq, OutcomeReply(msg.tx, rec[1], rec[2]))
        if isinstance(msg, VendRequest | UnlockRequest | TestSlot):
            return encode(a, seq, self._tx(msg))
        return encode(a, seq, Nak(ErrorCode.UNKNOWN_COMMAND, frame.command))

    def _tx(self, msg: VendRequest | UnlockRequest | TestSlot) -> Message:
        if not self.identified:
            return Nak(ErrorCode.NOT_IDENTIFIED, msg.CODE)
        rec = self.outcomes.get(msg.tx)
        if rec is not None:
            if rec[:2] != (msg.CODE, msg.slot):
                return TxReply(msg.tx, msg.slot, Outcome.TX_CONFLICT)
            return TxReply(msg.tx, msg.slot, rec[2])
        kind = self.slots.get(msg.slot)
        if kind is None:
            return TxReply(msg.tx, msg.slot, Outcome.INVALID_SLOT)
        locker = kind is WireSlotKind.LOCKER
        if (isinstance(msg, VendRequest) and locker) or (
            isinstance(msg, UnlockRequest) and not locker
        ):
            return TxReply(msg.tx, msg.slot, Outcome.WRONG_SLOT_KIND)
        self.outcomes[msg.tx] = (msg.CODE, msg.slot, Outcome.IN_PROGRESS)
        self.executions[msg.tx] += 1
        self.accepted.set()
        if self.complete_vends:
            self.finish(msg.tx, Outcome.DOOR_OPENED_AND_CLOSED if locker else Outcome.DELIVERED)
        return TxReply(msg.tx, msg.slot, Outcome.ACCEPTED)

    def identify_reply(self) -> IdentifyReply:
        groups: list[SlotGroup] = []
        for s in sorted(self.slots):
            kind = self.slots[s]
            last = groups[-1] if groups else None
            if last and last.kind is kind and last.first + last.count == s:
                groups[-1] = SlotGroup(last.first, last.count + 1, kind)
            else:
                groups.append(SlotGroup(s, 1, kind))
        return IdentifyReply(
            protocol_version=1,
            firmware=(1, 4, 2),
            cabinet=CabinetKind.MIXED,
            flags=IdentifyFlags.CHILLED | IdentifyFlags.NONVOLATILE_OUTCOMES,
            outcome_memory=64,
            model="PEER-1",
            serial=f"SN{self.address:04d}",
            slots=tuple(groups),
        )


class PtyPeer:
    """Boards on the master side of a pty; the link opens ``path`` (a symlink to the slave)."""

    def __init__(self, path: Path, *addresses: int) -> None:
        self.path = path
        self.boards = {a: PeerBoard(a) for a in (addresses or (0,))}
        self.lock = threading.Lock()  # held while a frame is handled; tests take it to poke state
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        tmp = path.with_name(path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(os.ttyname(self.slave))
        os.replace(tmp, path)
        self._stop_r, self._stop_w = os.pipe()
        self._decoder = FrameDecoder()
        self._thread = threading.Thread(target=self._run, name="pty-peer", daemon=True)
        self._thread.start()
        self.closed = False

    @property
    def board(self) -> PeerBoard:
        return self.boards[min(self.boards)]

    def send_raw(self, data: bytes) -> None:
        os.write(self.master, data)

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self.master, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            self._decoder.feed(data)
            for frame in list(self._decoder.frames()):
                board = self.boards.get(frame.address)
                if board is None or frame.command in (Command.ACK, Command.NAK):
                    if board is not None:
                        board.received.append(frame)
                    continue
                with self.lock:
                    reply = board.handle(frame)
                if reply:
                    with contextlib.suppress(OSError):
                        os.write(self.master, reply)

    def close(self) -> None:
        """Pull the plug: the link sees EIO on its next read."""
        if self.closed:
            return
        self.closed = True
        os.write(self._stop_w, b"x")
        self._thread.join(WAIT)
        for fd in (self.master, self.slave, self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)


# --------------------------------------------------------------------------- helpers


class Recorder:
    """Collects callback calls; waits on a condition instead of sleeping."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.cond = threading.Condition()

    def __call__(self, *args: object) -> None:
        with self.cond:
            self.calls.append(args)
            self.cond.notify_all()

    def wait_for(
        self, pred: Callable[[list[tuple[object, ...]]], bool], timeout: float = WAIT
    ) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: pred(self.calls), timeout)


def wait_until(pred: Callable[[], bool], timeout: float = WAIT) -> bool:
    """For state that has no condition to wait on (peer internals): short naps, bounded."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()
