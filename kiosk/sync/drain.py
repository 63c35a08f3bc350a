"""The drain: outbox records out through the current MQTT connection, PUBACKs written back.

Owns: the drain thread's state (the buffer of due records read ahead and its cursor, PUBACKed
seqs not yet written back, records held after a PUBACK failure, the backlog token bucket, the
resend schedule of records sent but not acknowledged: `kiosk.sync.pacing.ResendSchedule`).
`kiosk.sync.client.SyncClient` creates one, runs `loop()` on its drain thread, feeds it PUBACKs
from paho's thread (`puback()`) and asks for a fresh read after `wake()` (`refresh()`).

Must never:
- count a record as sent before the broker's PUBACK says success (reason code < 0x80);
- have more records in flight than the connection's window allows (`Connection.outbox_limit`);
- let a backlog delay a live sale record: CRITICAL records bypass the token bucket and the
  outbox hands them out first;
- resend on the same connection more than the schedule allows: a round every
  `ResendSchedule` interval (growing while the province does not ack), at most `window`
  records each (docs/sync.md, "Resends").
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from paho.mqtt.enums import MQTTErrorCode

from kiosk.clock import Clock
from kiosk.log import log_event
from kiosk.sync.connection import PUBACK_FAILURE, Connection, SyncStats
from kiosk.sync.outbox import OutboxRecord, Priority
from kiosk.sync.pacing import ResendSchedule, TokenBucket

__all__ = ["OutboxDrain", "OutboxLike"]

log = logging.getLogger("kiosk.sync.client")

# Seconds between the safety rescans of an outbox whose records become due again only by this
# process's own resets (see OutboxDrain._refill).
RESCAN_IDLE_S = 10.0

_Row = tuple[int, str, bytes, int]  # a due outbox record: (seq, topic, payload, priority)


class OutboxLike(Protocol):
    """What the client always calls on kiosk.sync.outbox.Outbox (which satisfies this; mypy
    checks it where the app passes one in).

    The client also uses these when the object has them (looked up with getattr, so a minimal
    outbox works too; Outbox has them all): `due_rows(limit, now, *, after)` (the fast read,
    preferred over `due`), `due_after(priority, seq, limit, now)` (a cursor read without
    `due_rows`), `last_seq()` (for the birth message and to notice appends), `last_ack_at()`
    (for `stats()`), `reset_sent()` (after a reconnect), `resend_overdue(limit, now,
    older_than_s, sent_before)` (a resend round on the same connection; without it the
    outbox's own `due` decides when a record is sent again), `acked_sent_at()` (the latest
    send time of an acknowledged record: what "overtaken" means in a round).
    """

    def due(self, limit: int, now: float) -> Sequence[OutboxRecord]: ...
    def mark_sent(self, seqs: Iterable[int], now: float) -> None: ...
    def ack(self, event_ids: Iterable[str]) -> int: ...
    def ack_records(self, records: Iterable[tuple[str, int]]) -> int: ...


class OutboxDrain:
    """Hands due outbox records to the current connection and writes PUBACKed ones back.

    `stats` and `lock` are the client's (the lock guards the stats); `current()` is the
    connection records may go out on (None: none); `connection(gen)` the connection of that
    generation, also while it is still waiting for its CONNACK to be handled (None: an old
    one). The tuning is the client's, see `SyncClient`."""

    def __init__(
        self,
        outbox: OutboxLike,
        clock: Clock,
        stats: SyncStats,
        lock: threading.Lock,
        current: Callable[[], Connection | None],
        connection: Callable[[int], Connection | None],
        stop: threading.Event,
        wake: threading.Event,
        *,
        backlog_rate: float,
        backlog_burst: float,
        poll_s: float,
        mark_batch: int,
        mark_delay_s: float,
        prefetch: int,
        resend: ResendSchedule | None = None,
    ) -> None:
        self.outbox = outbox
        self.clock = clock
        self._stats = stats
        self._lock = lock
        self._current = current
        self._connection = connection
        self._stop = stop
        self._wake = wake
        self._bucket = TokenBucket(backlog_rate, backlog_burst, clock.monotonic())
        self._poll_s = poll_s
        self._mark_batch = mark_batch
        self._mark_delay_s = mark_delay_s
        self._pubacks: queue.SimpleQueue[tuple[int, int, int]] = queue.SimpleQueue()
        # PUBACKed but not yet written back with mark_sent: kept out of due() results.
        self._unmarked: list[int] = []
        self._unmarked_set: set[int] = set()
        self._unmarked_since = 0.0
        # Records the broker refused (PUBACK failure): seq -> (retry not before, failures).
        self._held: dict[int, tuple[float, int]] = {}
        self._token_wait_s = 0.0  # > 0: records are waiting for the backlog token bucket
        # Due records read ahead (one query per `prefetch` records, not one per publish).
        self._prefetch = prefetch
        # (seq, topic, payload, priority) of due records, in due order
        self._buffer: collections.deque[_Row] = collections.deque()
        self._buffer_at = 0.0
        self._buffer_gen = -1
        # (priority, seq) of the last record read: where the next batch continues from
        self._cursor: tuple[int, int] | None = None
        # The last read returned fewer records than it asked for: nothing due lies beyond the
        # cursor until the outbox's last seq moves (an idle kiosk's poll is then one small
        # read of that seq, not a scan of the outbox).
        self._at_end = False
        # The full due() read skips every record sent but not yet acknowledged, row by row: it
        # runs at once after wake(), on a new connection, when records were appended (the
        # outbox's last seq moved), and at least every `_rescan_s` for records that became due
        # again behind the cursor (a PUBACK failure's hold ended; with an outbox without
        # resend_overdue, its ack timeout). The outbox's own records become due again only by
        # a reset this process makes (reconnect, resend round, resync: each forces a full
        # read), so without held records the rescan is a slow safety net.
        self._rescan_s = max(poll_s, 1.0)
        self._rescan_idle_s = max(poll_s, RESCAN_IDLE_S)
        self._full_at = 0.0
        self._seen_seq = -1
        self._refresh = False
        # Resend rounds on the same connection (None: the outbox has no resend_overdue).
        self._resend = resend if callable(getattr(outbox, "resend_overdue", None)) else None
        self._resend_gen = -1
        self._acked_seen = 0

    # --- called from other threads ------------------------------------------------------------

    def refresh(self) -> None:
        """Something was appended to the outbox: read it all again at the next step."""
        self._refresh = True

    def puback(self, gen: int, mid: int, code: int) -> None:
        """A PUBACK arrived (paho's thread): the drain thread takes it at its next step."""
        self._pubacks.put((gen, mid, code))

    # --- the drain thread ---------------------------------------------------------------------

    def loop(self) -> None:
        while not self._stop.is_set():
            try:
                published = self.drain_once()
            except Exception:
                log.exception("sync drain step failed")
                published = 0
                self._stop.wait(self._poll_s)
            if published == 0:
                self._wake.wait(self._idle_wait())
                self._wake.clear()
        self._process_pubacks()

    def _idle_wait(self) -> float:
        wait = self._poll_s
        if self._unmarked:
            wait = min(wait, self._mark_delay_s)
        if self._token_wait_s > 0:
            wait = min(wait, self._token_wait_s)
        return max(0.001, wait)

    def _process_pubacks(self) -> None:
        failures: list[tuple[int, int]] = []
        items: list[tuple[int, int, int]] = []
        get = self._pubacks.get_nowait
        with contextlib.suppress(queue.Empty):
            while True:
                items.append(get())
        # The newest connection's PUBACKs; that may be one still being set up (the PUBACK of
        # its birth message can arrive before the client makes it current: dropped, it would
        # hold a slot of the window for good).
        conn = self._connection(items[-1][0]) if items else None
        if items and conn is not None:
            gen = conn.gen
            with conn.lock:  # once per batch, not per PUBACK
                pop = conn.inflight.pop
                # an old connection's PUBACKs are dropped: its records are handed out again
                results = [(pop(mid, None), code) for g, mid, code in items if g == gen]
            ok = [seq for seq, code in results if seq is not None and code < PUBACK_FAILURE]
            failures = [
                (seq, code) for seq, code in results if seq is not None and code >= PUBACK_FAILURE
            ]  # (seq None: the birth/offline status message or a direct publish)
            if ok:
                if not self._unmarked:
                    self._unmarked_since = self.clock.monotonic()
                self._unmarked.extend(ok)
                self._unmarked_set.update(ok)
                if self._held:
                    for seq in ok:
                        self._held.pop(seq, None)
        if failures:
            self._hold(failures)
        self.flush_marks()

    def _hold(self, failures: list[tuple[int, int]]) -> None:
        """Records the broker refused are retried later, with a growing delay."""
        now = self.clock.monotonic()
        for seq, code in failures:
            _, n = self._held.get(seq, (0.0, 0))
            retry = min(60.0, 2.0 ** min(n, 6))
            self._held[seq] = (now + retry, n + 1)
            log_event(
                log,
                "sync.puback_failure",
                logging.WARNING,
                seq=seq,
                reason_code=hex(code),
                retry_in_s=retry,
            )
        with self._lock:
            self._stats.puback_failures += len(failures)

    def flush_marks(self, force: bool = False) -> None:
        """Write PUBACKed seqs back (in batches of `mark_batch` or after `mark_delay_s`)."""
        if not self._unmarked:
            return
        now = self.clock.monotonic()
        if (
            not force
            and len(self._unmarked) < self._mark_batch
            and now - self._unmarked_since < self._mark_delay_s
        ):
            return
        seqs = self._unmarked
        self.outbox.mark_sent(seqs, self.clock.time())
        with self._lock:
            self._stats.published += len(seqs)
        self._unmarked = []
        self._unmarked_set = set()
        self._unmarked_since = now

    def drain_once(self) -> int:
        self._process_pubacks()
        conn = self._current()
        if conn is None or not conn.ready or conn.ended.is_set():
            return 0
        with conn.lock:
            space = conn.outbox_limit() - len(conn.inflight)
        mono = self.clock.monotonic()
        self._resend_step(conn, mono)
        if space <= 0:
            return 0
        if (
            self._refresh
            or conn.gen != self._buffer_gen
            or not self._buffer
            or mono - self._buffer_at > self._poll_s
        ):
            self._refill(conn, mono)
        published = self._hand_over(conn, mono)
        if not published and not self._buffer and not conn.inflight:
            # idle: nothing due, nothing in flight; batching the write-back gains nothing now
            self.flush_marks(force=True)
        return published

    def _resend_step(self, conn: Connection, mono: float) -> None:
        """One round of the resend schedule when it is due: with acks since the last round, at
        most `window` overdue records an acknowledged one overtook become due again; without,
        a probe of at most `probe` of the oldest overdue records."""
        sched = self._resend
        if sched is None:
            return
        if conn.gen != self._resend_gen:  # a new connection: reset_sent made everything due
            self._resend_gen = conn.gen
            sched.reconnected(mono)
        with self._lock:
            acked = self._stats.acked
        if acked != self._acked_seen:
            self._acked_seen = acked
            sched.acked(mono)
        if not sched.due(mono):
            return
        resend: Callable[..., int] = getattr(self.outbox, "resend_overdue")  # noqa: B009
        heard = sched.take_round()
        before = None
        if heard:  # the province is there: only what an acknowledged record overtook
            acked_sent_at = getattr(self.outbox, "acked_sent_at", None)
            before = acked_sent_at() if callable(acked_sent_at) else None
            heard = before is not None  # (no send time known: the oldest, as without acks)
        n = resend(sched.limit(heard), self.clock.time(), sched.base_s, before)
        level = sched.level
        sched.resent(mono, n, heard)
        if n:
            self._refresh = True
            with self._lock:
                self._stats.resent += n
            log_event(
                log,
                "sync.resend_overdue",
                records=n,
                level=level,
                overtaken=heard,
                next_in_s=round(sched.next_at - mono, 1),
            )

    def _hand_over(self, conn: Connection, mono: float) -> int:
        """Publish buffered records while the window has room; how many were published."""
        published = 0
        self._token_wait_s = 0.0
        buffer = self._buffer
        critical = int(Priority.CRITICAL)
        success = MQTTErrorCode.MQTT_ERR_SUCCESS
        with conn.lock:  # one lock round for the whole batch (as SyncClient._publish, per record)
            inflight = conn.inflight
            limit = conn.outbox_limit()
            limit_rest = limit - conn.ahead + conn.ahead_rest  # for non-critical records
            publish = conn.client.publish
            while buffer and len(inflight) < limit:
                seq, topic, payload, prio = buffer[0]
                if prio != critical and len(inflight) >= limit_rest:
                    break
                # CRITICAL (sale records) never wait for tokens; the rest of a backlog is
                # paced. The buffer is in (priority, seq) order: after the first record without
                # a token come only more non-critical ones.
                if prio != critical and not self._bucket.take(mono):
                    self._token_wait_s = self._bucket.wait_s(mono)
                    break
                info = publish(topic, payload, qos=1)
                if info.rc != success:
                    log_event(log, "sync.publish_failed", logging.WARNING, rc=str(info.rc))
                    break
                inflight[info.mid] = seq
                conn.handed += 1
                buffer.popleft()
                published += 1
            handed = len(inflight)
            # on the wire: paho's count when paho enforces the window (the rest wait in its
            # queue), else everything handed over
            on_wire = conn.on_wire() if conn.paho_limits else handed
        with self._lock:
            self._stats.inflight = handed
            if on_wire > self._stats.peak_inflight:
                self._stats.peak_inflight = on_wire
        return published

    def _refill(self, conn: Connection, mono: float) -> None:
        """Read the next due records, highest priority first, leaving out what is in flight,
        PUBACKed but not yet written back, or held after a PUBACK failure. Re-read at least
        every `poll_s` and at once after `wake()`, so a new sale record overtakes a buffered
        backlog."""
        due_after = getattr(self.outbox, "due_after", None)
        last_seq = getattr(self.outbox, "last_seq", None)
        rescan_s = self._rescan_s if self._held or self._resend is None else self._rescan_idle_s
        go_on = (
            callable(due_after)
            and callable(last_seq)
            and not self._refresh
            and conn.gen == self._buffer_gen
            and (self._cursor is not None or self._at_end)
            and mono - self._full_at <= rescan_s
        )
        if go_on and callable(last_seq) and mono - self._buffer_at > self._poll_s:
            # the poll: anything appended (without a wake())? Then read it all again.
            go_on = last_seq() == self._seen_seq
            self._buffer_at = mono
        if go_on:
            if not self._buffer and not self._at_end and self._cursor is not None:
                # The buffer ran out: read on from where it ended (an index seek, not a
                # rescan of everything already sent).
                rows = self._read(self._prefetch, self._cursor)
                self._at_end = len(rows) < self._prefetch
                if rows:
                    self._cursor = (int(rows[-1][3]), int(rows[-1][0]))
                self._buffer = collections.deque(self._not_excluded(conn, mono, rows))
            return
        self._refresh = False
        self._full_at = mono
        if callable(last_seq):
            self._seen_seq = last_seq()  # before the read: later appends show at the next poll
        exclude = self._exclude(conn, mono)
        want = self._prefetch + len(exclude)
        rows = self._read(want, None)
        self._at_end = len(rows) < want
        self._cursor = (int(rows[-1][3]), int(rows[-1][0])) if rows else None
        self._buffer = collections.deque(r for r in rows if r[0] not in exclude)
        self._buffer_at = mono
        self._buffer_gen = conn.gen

    def _exclude(self, conn: Connection, mono: float) -> set[int]:
        """In flight, PUBACKed but not yet written back, or held after a PUBACK failure."""
        with conn.lock:
            inflight_seqs = {s for s in conn.inflight.values() if s is not None}
        held_now = {s for s, (until, _) in self._held.items() if until > mono}
        return self._unmarked_set | inflight_seqs | held_now

    def _read(self, limit: int, after: tuple[int, int] | None) -> Sequence[_Row]:
        """Due records as (seq, topic, payload, priority): the outbox's light `due_rows` when
        it has one, else `due()` / `due_after()` records taken apart."""
        now = self.clock.time()
        due_rows = getattr(self.outbox, "due_rows", None)
        if callable(due_rows):
            rows: Sequence[_Row] = due_rows(limit, now, after=after)
            return rows
        if after is None:
            records = self.outbox.due(limit, now)
        else:
            # _refill keeps a cursor only for an outbox that has due_after
            due_after: Callable[[int, int, int, float], Sequence[OutboxRecord]] | None
            due_after = getattr(self.outbox, "due_after", None)
            if due_after is None:
                raise AttributeError("the outbox has no due_after")
            records = due_after(after[0], after[1], limit, now)
        return [(r.seq, r.topic, r.payload, int(r.priority)) for r in records]

    def _not_excluded(self, conn: Connection, mono: float, rows: Sequence[_Row]) -> list[_Row]:
        exclude = self._exclude(conn, mono)
        return [r for r in rows if r[0] not in exclude]
