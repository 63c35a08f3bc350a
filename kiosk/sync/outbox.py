"""The outbox: every record the province must get, kept in SQLite until it says it has it.

Owns: the `outbox` and `outbox_stats` tables (migration v3) and the per-kiosk sequence numbers
(`counters('outbox_seq')`). Guarantees:
- `append` returns only after the record is committed (synchronous=FULL: fsynced); with `conn`
  it joins the caller's transaction, so a state change and its record commit together.
- seq is strictly increasing and never reused, across restarts and acknowledgements.
- an event id appended twice gives the same record (idempotent); the province deduplicates by
  event id too, so republishing is always safe.
- a record leaves only when the province acknowledges it end to end (`ack`); a PUBACK is not
  an acknowledgement. A record sent is not due again by itself: the client makes records due
  again, after a reconnect all of them (`reset_sent`), on the same connection a bounded number
  of the oldest not acknowledged within `ack_timeout_s` (`resend_overdue`, on its schedule).
- over the disk budget, LOW records are dropped oldest first, then NORMAL, and counted; HIGH
  and CRITICAL are never dropped. A CRITICAL record that cannot be written raises
  OutboxFull / OutboxWriteError: the controller must stop selling.
Must never publish anything itself (the MQTT client does) nor decide what a record means.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

from kiosk.clock import Clock
from kiosk.store import Store, StoreError
from kiosk.sync.clockoffset import ClockOffset
from kiosk.sync.ledger_head import note_acked_sales
from kiosk.sync.topics import EVENT_KINDS, MAX_PAYLOAD_BYTES, Topics, encode

__all__ = [
    "OUTBOX_KINDS",
    "Outbox",
    "OutboxError",
    "OutboxFull",
    "OutboxItem",
    "OutboxRecord",
    "OutboxWriteError",
    "Priority",
]

SEQ_COUNTER = "outbox_seq"
LAST_ACK_SETTING = "outbox.last_ack_at"
ROW_OVERHEAD = 64  # bytes counted per row on top of payload, topic and event id (see v3 triggers)
OUTBOX_KINDS: tuple[str, ...] = (*EVENT_KINDS, "telemetry", "reported")
_CHUNK = 500  # ids per SQL statement
CACHE_BYTES = 16 * 1024 * 1024  # payload bytes of appended records kept for due_rows()


class Priority(IntEnum):
    CRITICAL = 0  # sale records, refunds due, orders: never dropped, fsynced before return
    HIGH = 1  # alarms, stock changes: never dropped
    NORMAL = 2  # reported state: dropped (oldest first) after LOW when over budget
    LOW = 3  # telemetry: dropped first, may be coalesced


class OutboxError(Exception):
    """The outbox could not take a record. For CRITICAL: the kiosk must stop selling."""


class OutboxFull(OutboxError):
    """The record does not fit in the disk budget even after dropping what may be dropped."""


class OutboxWriteError(OutboxError):
    """SQLite (or the disk under it) failed to write the record."""


@dataclass(frozen=True)
class OutboxRecord:
    seq: int
    event_id: str
    kind: str
    topic: str
    payload: bytes
    priority: Priority
    created_at: float
    attempts: int
    last_sent_at: float | None


class OutboxItem(NamedTuple):
    kind: str
    body: Mapping[str, Any]
    priority: Priority
    event_id: str | None = None


# due: never sent, or made due again (reset_sent / resend_overdue); sending is not a timer here
_DUE = "last_sent_at IS NULL"
_COLS = "seq, event_id, kind, topic, payload, priority, created_at, attempts, last_sent_at"


def _record(row: Sequence[Any]) -> OutboxRecord:
    return OutboxRecord(
        seq=int(row[0]),
        event_id=str(row[1]),
        kind=str(row[2]),
        topic=str(row[3]),
        payload=bytes(row[4]),
        priority=Priority(int(row[5])),
        created_at=float(row[6]),
        attempts=int(row[7]),
        last_sent_at=None if row[8] is None else float(row[8]),
    )


def _row_bytes(payload: bytes, topic: str, event_id: str) -> int:
    # must match the v3 triggers: length() of a TEXT is in characters; topics and ids are ASCII
    return len(payload) + len(topic) + len(event_id) + ROW_OVERHEAD


class Outbox:
    """Thread-safe (the store serialises its connection). One per store."""

    def __init__(
        self,
        store: Store,
        topics: Topics,
        clock: Clock,
        budget_bytes: int = 50_000_000,
        ack_timeout_s: float = 30.0,
        *,
        clock_offset: ClockOffset | None = None,
        boot: int | None = None,
        critical_reserve_bytes: int | None = None,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        if budget_bytes <= 0 or ack_timeout_s <= 0:
            raise ValueError("budget_bytes and ack_timeout_s must be > 0")
        self.store = store
        self.topics = topics
        self.clock = clock
        self.budget_bytes = budget_bytes
        self.ack_timeout_s = ack_timeout_s
        self.clock_offset = clock_offset
        self.boot = store.counters.current("boot") if boot is None else boot
        # CRITICAL records may use this much beyond the budget (HIGH is refused first), so the
        # kiosk keeps selling a while longer when the province has not acknowledged for long.
        self.critical_reserve_bytes = (
            budget_bytes // 10 if critical_reserve_bytes is None else critical_reserve_bytes
        )
        # A read cache of committed records (seq -> (topic, payload, priority)), filled by
        # append after its commit, so due_rows() reads only seqs from SQLite. A seq is never
        # reused and these fields never change, so an entry is right for as long as its record
        # exists; whether a record exists and is due is always asked of SQLite. Bounded by
        # `cache_bytes` of payload (0: no cache); an entry leaves when its record is marked
        # sent, acknowledged or deleted; when full, new records are simply not cached.
        self._cache: dict[int, tuple[str, bytes, int]] = {}
        self._cache_size = 0
        self._cache_lock = threading.Lock()
        self.cache_bytes = cache_bytes
        self._acked_sent_at: float | None = None  # see acked_sent_at()
        # last_seq() as read at a store change token: the publisher polls it every 0.25 s
        self._last_seq_at: tuple[tuple[int, int, int], int] | None = None

    # --- writing --------------------------------------------------------------------------

    def topic_for(self, kind: str) -> str:
        if kind in EVENT_KINDS:
            return self.topics.events(kind)
        if kind == "telemetry":
            return self.topics.telemetry
        if kind == "reported":
            return self.topics.reported
        raise ValueError(f"no outbox topic for kind {kind!r} (known: {', '.join(OUTBOX_KINDS)})")

    def append(
        self,
        kind: str,
        body: Mapping[str, Any],
        priority: Priority,
        *,
        event_id: str | None = None,
        conn: sqlite3.Connection | None = None,
        coalesce: bool = False,
    ) -> OutboxRecord:
        """Add one record; committed (fsynced) before this returns, or part of the caller's
        transaction when `conn` (the connection of an open `store.transaction()`) is given.

        `coalesce=True` (LOW only): unsent LOW records of the same kind are replaced.
        Raises ValueError for an unknown kind, a body that is not JSON or too big;
        OutboxFull when it does not fit the budget; OutboxWriteError when SQLite fails.
        """
        return self._write([OutboxItem(kind, body, Priority(priority), event_id)], conn, coalesce)[
            0
        ]

    def coalesce(self, kind: str, body: Mapping[str, Any]) -> OutboxRecord:
        """A LOW record replacing any unsent LOW record of the same kind (telemetry)."""
        return self.append(kind, body, Priority.LOW, coalesce=True)

    def append_many(
        self,
        items: Iterable[OutboxItem | tuple[Any, ...]],
        *,
        conn: sqlite3.Connection | None = None,
    ) -> list[OutboxRecord]:
        """Group commit: all items in one transaction (one fsync). All or none."""
        norm = [OutboxItem(*it) if not isinstance(it, OutboxItem) else it for it in items]
        return self._write(norm, conn, False)

    def _write(
        self, items: list[OutboxItem], conn: sqlite3.Connection | None, coalesce: bool
    ) -> list[OutboxRecord]:
        for it in items:
            self.topic_for(it.kind)  # unknown kinds fail before anything is written
            if not isinstance(it.body, Mapping):
                raise ValueError(f"outbox body must be a mapping, got {type(it.body).__name__}")
        if conn is not None and not conn.in_transaction:
            raise ValueError("conn given but no transaction is open on it")
        full: OutboxFull | None = None
        out: list[OutboxRecord] = []
        try:
            with self.store.transaction() as c:
                if conn is not None and c is not conn:
                    raise ValueError("conn is not this store's connection")
                for it in items:
                    rec = self._insert(c, it, coalesce)
                    if isinstance(rec, OutboxFull):
                        if it.priority <= Priority.HIGH or len(items) > 1:
                            raise rec  # roll back: HIGH/CRITICAL are never silently lost
                        full = rec  # a LOW/NORMAL record dropped: commit the count, then raise
                    else:
                        out.append(rec)
        except (OutboxError, ValueError):
            raise
        except (sqlite3.Error, StoreError, OSError) as e:
            raise OutboxWriteError(f"cannot write outbox record: {type(e).__name__}: {e}") from e
        if conn is None and not c.in_transaction:  # committed (not a savepoint): cache it
            with self._cache_lock:
                for rec in out:
                    if self._cache_size + len(rec.payload) > self.cache_bytes:
                        break
                    if rec.seq not in self._cache:  # (an idempotent re-append: same record)
                        self._cache[rec.seq] = (rec.topic, rec.payload, int(rec.priority))
                        self._cache_size += len(rec.payload)
        if full is not None:
            raise full
        return out

    def _insert(
        self, c: sqlite3.Connection, it: OutboxItem, coalesce: bool
    ) -> OutboxRecord | OutboxFull:
        if it.event_id is not None:
            row = c.execute(f"SELECT {_COLS} FROM outbox WHERE event_id = ?", (it.event_id,))
            existing = row.fetchone()
            if existing is not None:
                return _record(existing)
        event_id = it.event_id if it.event_id is not None else uuid.uuid4().hex
        topic = self.topic_for(it.kind)
        prio = Priority(it.priority)
        if coalesce and prio is Priority.LOW:
            gone = c.execute(
                "DELETE FROM outbox WHERE kind = ? AND priority = ? AND last_sent_at IS NULL "
                "RETURNING seq",
                (it.kind, int(Priority.LOW)),
            ).fetchall()
            self._uncache(int(old) for (old,) in gone)
        now = self.clock.time()
        offset = self.clock_offset.offset() if self.clock_offset is not None else None
        # seq is taken before the budget check: a refused record leaves a gap (never a reuse)
        # when its transaction commits; the province treats gaps as "dropped or not yet seen".
        seq_rows = c.execute(
            "INSERT INTO counters (name, value) VALUES (?, 1) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
            (SEQ_COUNTER,),
        ).fetchall()
        seq = int(seq_rows[0][0])
        try:
            payload = encode(
                {
                    "kiosk_id": self.topics.kiosk_id,
                    "seq": seq,
                    "event_id": event_id,
                    "kind": it.kind,
                    "priority": prio.name.lower(),
                    "kiosk_time": now,
                    "clock_offset": offset,
                    "boot": self.boot,
                    "body": dict(it.body),
                }
            )
        except (TypeError, ValueError) as e:
            raise ValueError(f"outbox body of {it.kind!r} is not JSON: {e}") from e
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"outbox record {it.kind!r}: {len(payload)} > {MAX_PAYLOAD_BYTES} B")
        need = _row_bytes(payload, topic, event_id)
        refused = self._make_room(c, prio, need)
        if refused is not None:
            return refused
        c.execute(
            f"INSERT INTO outbox ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0, NULL)",
            (seq, event_id, it.kind, topic, payload, int(prio), now),
        )
        return OutboxRecord(seq, event_id, it.kind, topic, payload, prio, now, 0, None)

    def _make_room(self, c: sqlite3.Connection, prio: Priority, need: int) -> OutboxFull | None:
        """Drop LOW, then NORMAL, records (oldest first) until `need` more bytes fit."""
        stats = {int(p): int(b) for p, b in c.execute("SELECT priority, bytes FROM outbox_stats")}
        total = sum(stats.values())
        limit = self.budget_bytes + (
            self.critical_reserve_bytes if prio is Priority.CRITICAL else 0
        )
        if total + need <= limit:
            return None
        # a new record may push out older records of its own or a lower priority, never HIGH+
        victims = [p for p in (Priority.LOW, Priority.NORMAL) if p >= prio]
        if total - sum(stats.get(int(p), 0) for p in victims) + need > limit:
            if prio >= Priority.NORMAL:
                c.execute(
                    "UPDATE outbox_stats SET dropped = dropped + 1 WHERE priority = ?", (int(prio),)
                )
            return OutboxFull(
                f"outbox over budget: {total} B queued + {need} B > {limit} B "
                f"({prio.name} record refused; HIGH and CRITICAL records are never dropped)"
            )
        excess = total + need - limit
        for p in victims:
            while excess > 0:
                rows = c.execute(
                    "SELECT seq, length(payload) + length(topic) + length(event_id) + ? "
                    "FROM outbox WHERE priority = ? ORDER BY seq LIMIT 256",
                    (ROW_OVERHEAD, int(p)),
                ).fetchall()
                if not rows:
                    break
                last, n = 0, 0
                for seq, size in rows:
                    last, n = int(seq), n + 1
                    excess -= int(size)
                    if excess <= 0:
                        break
                c.execute("DELETE FROM outbox WHERE priority = ? AND seq <= ?", (int(p), last))
                self._uncache(
                    [s for s, v in list(self._cache.items()) if v[2] == int(p) and s <= last]
                )
                c.execute(
                    "UPDATE outbox_stats SET dropped = dropped + ? WHERE priority = ?", (n, int(p))
                )
            if excess <= 0:
                break
        return None

    # --- sending and acknowledging --------------------------------------------------------

    def due(self, limit: int, now: float | None = None) -> list[OutboxRecord]:
        """Records to publish now: never sent, or made due again (`reset_sent`,
        `resend_overdue`), highest priority first, then by seq. (`now` is accepted for the
        callers' sake; being due does not depend on the time.)"""
        with self.store.read() as c:
            rows = c.execute(
                f"SELECT {_COLS} FROM outbox WHERE {_DUE} ORDER BY priority, seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [_record(r) for r in rows]

    def due_after(
        self, priority: int, seq: int, limit: int, now: float | None = None
    ) -> list[OutboxRecord]:
        """`due()` continued: the due records that come after (priority, seq) in due order.
        A range seek on the outbox_due index, so reading a long queue batch by batch does not
        rescan the records already sent (a plain `due()` skips them one by one each time).
        It does not see records that became due behind the cursor (a new record of a higher
        priority, a resend): callers run a full `due()` now and then for those."""
        due = _DUE
        with self.store.read() as c:
            rows = c.execute(  # the rest of the cursor's priority: a range of outbox_due
                f"SELECT {_COLS} FROM outbox WHERE priority = ? AND seq > ? AND {due} "
                "ORDER BY priority, seq LIMIT ?",
                (int(priority), int(seq), limit),
            ).fetchall()
            if len(rows) < limit:  # then the lower priorities
                rows += c.execute(
                    f"SELECT {_COLS} FROM outbox WHERE priority > ? AND {due} "
                    "ORDER BY priority, seq LIMIT ?",
                    (int(priority), limit - len(rows)),
                ).fetchall()
        return [_record(r) for r in rows]

    def due_rows(
        self, limit: int, now: float | None = None, *, after: tuple[int, int] | None = None
    ) -> list[tuple[int, str, bytes, int]]:
        """`due()` (or, with `after=(priority, seq)`, `due_after()`) for the publisher's hot
        path: (seq, topic, payload, priority) per record as plain tuples, same order. The due
        seqs come from SQLite in one aggregate row (the sqlite3 module hands the GIL back and
        forth on every row fetched); topic and payload from the read cache of records this
        process appended, else from SQLite."""
        due = _DUE
        agg = "SELECT group_concat(priority), group_concat(seq) FROM ({}) "
        keys: list[tuple[int, int]] = []
        with self.store.read() as c:
            queries: list[tuple[str, tuple[Any, ...]]]
            if after is None:
                queries = [
                    (
                        f"SELECT priority, seq FROM outbox WHERE {due} "
                        "ORDER BY priority, seq LIMIT ?",
                        (),
                    )
                ]
            else:
                priority, seq = int(after[0]), int(after[1])
                queries = [
                    (
                        f"SELECT priority, seq FROM outbox WHERE priority = ? AND seq > ? "
                        f"AND {due} ORDER BY priority, seq LIMIT ?",
                        (priority, seq),
                    ),
                    (
                        f"SELECT priority, seq FROM outbox WHERE priority > ? AND {due} "
                        "ORDER BY priority, seq LIMIT ?",
                        (priority,),
                    ),
                ]
            for sql, args in queries:
                if len(keys) >= limit:
                    break
                prios, seqs = c.execute(agg.format(sql), (*args, limit - len(keys))).fetchone()
                if seqs:
                    part = sorted(
                        zip(map(int, prios.split(",")), map(int, seqs.split(",")), strict=True)
                    )
                    keys += part
            cache = self._cache
            missing = [s for _, s in keys if s not in cache]
            found: dict[int, tuple[str, bytes, int]] = {}
            for i in range(0, len(missing), _CHUNK):
                chunk = missing[i : i + _CHUNK]
                for row in c.execute(
                    "SELECT seq, topic, payload, priority FROM outbox "
                    f"WHERE seq IN ({','.join('?' * len(chunk))})",
                    chunk,
                ):
                    found[int(row[0])] = (str(row[1]), bytes(row[2]), int(row[3]))
        out: list[tuple[int, str, bytes, int]] = []
        for _, s in keys:
            hit = cache.get(s) or found.get(s)
            if hit is not None:  # (None: deleted between the two reads, e.g. acknowledged)
                out.append((s, *hit))
        return out

    def mark_sent(self, seqs: Iterable[int], now: float | None = None) -> None:
        """The records were handed to the broker (published; PUBACK or not)."""
        now = self.clock.time() if now is None else now
        # runs of consecutive seqs (the usual case: a drained batch) become BETWEEN ranges
        runs: list[tuple[int, int]] = []
        for seq in sorted({int(s) for s in seqs}):
            if runs and runs[-1][1] == seq - 1:
                runs[-1] = (runs[-1][0], seq)
            else:
                runs.append((seq, seq))
        if self._cache:
            self._uncache(s for lo, hi in runs for s in range(lo, hi + 1))
        with self.store.transaction() as c:
            for i in range(0, len(runs), _CHUNK // 2):
                chunk = runs[i : i + _CHUNK // 2]
                c.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_sent_at = ? WHERE "
                    + " OR ".join("seq BETWEEN ? AND ?" for _ in chunk),
                    (now, *(x for run in chunk for x in run)),
                )

    def _uncache(self, seqs: Iterable[int]) -> None:
        """Forget these records in the read cache (always safe: a miss is read from SQLite)."""
        with self._cache_lock:
            cache = self._cache
            for seq in seqs:
                hit = cache.pop(seq, None)
                if hit is not None:
                    self._cache_size -= len(hit[1])

    def reset_sent(self) -> int:
        """Make every record due now (call after a reconnect). Returns how many."""
        with self.store.transaction() as c:
            return c.execute(
                "UPDATE outbox SET last_sent_at = NULL WHERE last_sent_at IS NOT NULL"
            ).rowcount

    def resend_overdue(
        self,
        limit: int,
        now: float | None = None,
        older_than_s: float | None = None,
        sent_before: float | None = None,
    ) -> int:
        """Make due again at most `limit` records that were sent and have not been
        acknowledged for `older_than_s` (default `ack_timeout_s`), the first in due order
        (priority, then seq); a record "sent in the future" (the wall clock was set back) is
        overdue too, so it never waits years. With `sent_before`: only records last sent
        before that time (overtaken by an acknowledged record, `acked_sent_at`). Returns how
        many (one round of the client's resend schedule, kiosk.sync.pacing.ResendSchedule)."""
        if limit < 1:
            return 0
        now = self.clock.time() if now is None else now
        age = self.ack_timeout_s if older_than_s is None else older_than_s
        with self.store.transaction() as c:
            return _reset_overdue(c, limit, now - age, now + age, sent_before)

    def ack(self, event_ids: Iterable[str]) -> int:
        """The province has these records (end to end): delete them. Idempotent; unknown ids
        are ignored. Returns how many records were removed."""
        ids = [e for e in event_ids if isinstance(e, str)]
        if not ids:
            return 0
        removed = 0
        cache = self._cache
        with self.store.transaction() as c:
            for i in range(0, len(ids), _CHUNK):
                chunk = ids[i : i + _CHUNK]
                where = f"event_id IN ({','.join('?' * len(chunk))})"
                sales = c.execute(
                    f"SELECT payload FROM outbox WHERE kind = 'sale' AND {where}", chunk
                ).fetchall()
                if sales:  # the anchor `kiosk ledger verify` checks (kiosk.sync.ledger_head)
                    note_acked_sales(c, [bytes(p) for (p,) in sales], self.clock.time())
                sql = f"DELETE FROM outbox WHERE {where}"
                if cache:  # (forgetting an entry is always safe, even if this rolls back)
                    gone = c.execute(sql + " RETURNING seq", chunk).fetchall()
                    self._uncache(int(seq) for (seq,) in gone)
                    removed += len(gone)
                else:
                    removed += c.execute(sql, chunk).rowcount
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (LAST_ACK_SETTING, json.dumps(self.clock.time())),
            )
        return removed

    def ack_records(self, records: Iterable[tuple[str, int]]) -> int:
        """A verified province ack (kiosk.sync.acks): delete each record whose event id AND seq
        both match. A seq is never reused, so an old ack replayed cannot remove a newer record
        that carries the same event id. Idempotent; returns how many records were removed."""
        pairs = [(e, s) for e, s in records if isinstance(e, str) and isinstance(s, int)]
        if not pairs:
            return 0
        self._uncache(s for _e, s in pairs)  # (forgetting an entry is always safe)
        now = self.clock.time()
        with self.store.transaction() as c:
            sales, latest = _read_acked(c, pairs, now)
            if sales:  # the anchor `kiosk ledger verify` checks (kiosk.sync.ledger_head)
                note_acked_sales(c, sales, now)
            removed = c.executemany(
                "DELETE FROM outbox WHERE seq = ? AND event_id = ?", [(s, e) for e, s in pairs]
            ).rowcount
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (LAST_ACK_SETTING, json.dumps(now)),
            )
        if latest is not None and (self._acked_sent_at is None or latest > self._acked_sent_at):
            self._acked_sent_at = latest
        return max(0, removed)

    def acked_sent_at(self) -> float | None:
        """The latest time (kiosk wall clock) at which a record the province has acknowledged
        since this process started was sent (records sent once only: the acked copy is
        known); None before the first such ack. A record still
        unacknowledged that was sent before it has been overtaken: probably lost on the way
        (kiosk.sync.drain resends such records first, `resend_overdue(sent_before=...)`)."""
        return self._acked_sent_at

    # --- inspection -----------------------------------------------------------------------

    def get(self, event_id: str) -> OutboxRecord | None:
        with self.store.read() as c:
            row = c.execute(f"SELECT {_COLS} FROM outbox WHERE event_id = ?", (event_id,))
            found = row.fetchone()
        return None if found is None else _record(found)

    def records(self) -> list[OutboxRecord]:
        """Every queued record by seq (for tests and diagnostics; may be large)."""
        with self.store.read() as c:
            rows = c.execute(f"SELECT {_COLS} FROM outbox ORDER BY seq").fetchall()
        return [_record(r) for r in rows]

    def _stats(self, col: str) -> dict[Priority, int]:
        with self.store.read() as c:
            rows = c.execute(f"SELECT priority, {col} FROM outbox_stats").fetchall()
        out = {p: 0 for p in Priority}
        out.update({Priority(int(p)): int(v) for p, v in rows})
        return out

    def depth(self) -> dict[Priority, int]:
        return self._stats("depth")

    def dropped(self) -> dict[Priority, int]:
        """Records dropped for the budget, per priority (only LOW and NORMAL ever are)."""
        return self._stats("dropped")

    def size_bytes(self) -> int:
        return sum(self._stats("bytes").values())

    def last_seq(self) -> int:
        """The last seq handed out (0 if none), by any process. Read again only when the store
        changed since the last read (Store.change_token): an idle poll is one pragma."""
        token = self.store.change_token()
        seen = self._last_seq_at
        if seen is not None and seen[0] == token:
            return seen[1]
        value = self.store.counters.current(SEQ_COUNTER)
        self._last_seq_at = (token, value)  # a change after the token: the next token differs
        return value

    def last_ack_at(self) -> float | None:
        """Kiosk time of the last end-to-end acknowledgement, None if never."""
        text = self.store.settings.get(LAST_ACK_SETTING)
        return None if text is None else float(text)


def _reset_overdue(
    c: sqlite3.Connection, limit: int, sent_by: float, sent_after: float, before: float | None
) -> int:
    """Outbox.resend_overdue's UPDATE: sent at or before `sent_by` or after `sent_after` (a
    clock set back), and before `before` when given; the first `limit` in due order."""
    overtaken = "" if before is None else "AND last_sent_at < ? "
    args = () if before is None else (before,)
    return c.execute(
        "UPDATE outbox SET last_sent_at = NULL WHERE seq IN (SELECT seq FROM outbox "
        "WHERE last_sent_at IS NOT NULL AND (last_sent_at <= ? OR last_sent_at > ?) "
        f"{overtaken}ORDER BY priority, seq LIMIT ?)",
        (sent_by, sent_after, *args, int(limit)),
    ).rowcount


def _read_acked(
    c: sqlite3.Connection, pairs: list[tuple[str, int]], now: float
) -> tuple[list[bytes], float | None]:
    """For the records of a verified ack whose event id AND seq match: the sale records'
    payloads (the ledger anchor) and the latest send time (`Outbox.acked_sent_at`) of those
    sent exactly once: an ack does not say which copy it answers, and a record sent again
    carries the time of its newest copy (a 500-kiosk run with reconnects counted every record
    as overtaken that way). A record acknowledged before its first send was written back
    (`mark_sent` comes in batches; attempts still 0) counts as sent `now`."""
    wanted = dict((s, e) for e, s in pairs)
    seqs = list(wanted)
    sales: list[bytes] = []
    latest: float | None = None
    for i in range(0, len(seqs), _CHUNK):
        chunk = seqs[i : i + _CHUNK]
        for seq, eid, payload, sent in c.execute(
            "SELECT seq, event_id, CASE WHEN kind = 'sale' THEN payload END, "
            "CASE WHEN attempts = 0 THEN ? WHEN attempts = 1 THEN last_sent_at END "
            f"FROM outbox WHERE seq IN ({','.join('?' * len(chunk))})",
            (now, *chunk),
        ):
            if wanted.get(int(seq)) != eid:
                continue
            if payload is not None:
                sales.append(bytes(payload))
            if sent is not None:
                latest = float(sent) if latest is None else max(latest, float(sent))
    return sales, latest
