"""The outbox: durable, ordered, deduplicated, acknowledged end to end, within a disk budget."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import kiosk
from kiosk.clock import ManualClock
from kiosk.store import Store, open_store
from kiosk.sync.clockoffset import ClockOffset
from kiosk.sync.outbox import (
    Outbox,
    OutboxFull,
    OutboxItem,
    OutboxWriteError,
    Priority,
)
from kiosk.sync.topics import Topics, decode

KIOSK = "AH-341524-0007"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_790_000_000.0)


@pytest.fixture
def store(tmp_path: Path, clock: ManualClock) -> Iterator[Store]:
    s = open_store(tmp_path, clock)
    yield s
    s.close()


def make(store: Store, clock: ManualClock, **kw: object) -> Outbox:
    return Outbox(store, Topics(KIOSK), clock, **kw)  # type: ignore[arg-type]


def test_append_payload_and_topic(store: Store, clock: ManualClock) -> None:
    off = ClockOffset()
    off.observe(clock.time() + 12.0, clock.time())
    ob = Outbox(store, Topics(KIOSK), clock, clock_offset=off, boot=5)
    r = ob.append("sale", {"order_id": "O-1", "amount_fen": 1500}, Priority.CRITICAL)
    assert r.topic == f"kiosk/v1/{KIOSK}/events/sale" and r.seq == 1 and r.attempts == 0
    msg = decode("event", r.payload)
    assert msg["seq"] == 1 and msg["event_id"] == r.event_id and msg["kind"] == "sale"
    assert msg["kiosk_time"] == clock.time() and msg["clock_offset"] == 12.0
    assert msg["boot"] == 5 and msg["kiosk_id"] == KIOSK and msg["priority"] == "critical"
    assert msg["body"] == {"order_id": "O-1", "amount_fen": 1500}
    assert ob.append("telemetry", {"m": 1}, Priority.LOW).topic.endswith("/telemetry")
    assert ob.append("reported", {}, Priority.NORMAL).topic.endswith("/reported")
    with pytest.raises(ValueError, match="no outbox topic"):
        ob.append("bogus", {}, Priority.LOW)
    with pytest.raises(ValueError, match="not JSON"):
        ob.append("alarm", {"x": object()}, Priority.HIGH)
    with pytest.raises(ValueError, match="65536"):
        ob.append("alarm", {"x": "y" * 70_000}, Priority.HIGH)
    assert [r.seq for r in ob.records()] == [1, 2, 3]


def test_durable_and_seq_monotonic_across_reopen(tmp_path: Path, clock: ManualClock) -> None:
    s = open_store(tmp_path, clock)
    ob = make(s, clock)
    first = [ob.append("order", {"i": i}, Priority.CRITICAL) for i in range(3)]
    ob.ack([first[-1].event_id])  # the newest is gone: its seq must still never come back
    s.close()
    s = open_store(tmp_path, clock)
    ob = make(s, clock)
    assert [r.event_id for r in ob.records()] == [r.event_id for r in first[:2]]
    nxt = ob.append("order", {"i": 3}, Priority.CRITICAL)
    assert nxt.seq == 4 and ob.last_seq() == 4
    s.close()


def test_idempotent_event_id(store: Store, clock: ManualClock) -> None:
    ob = make(store, clock)
    a = ob.append("order", {"state": "PAID"}, Priority.CRITICAL, event_id="O-1:PAID")
    clock.advance(5)
    b = ob.append("order", {"state": "PAID", "again": True}, Priority.CRITICAL, event_id="O-1:PAID")
    assert a == b and len(ob.records()) == 1 and ob.last_seq() == 1


def test_joins_the_callers_transaction(store: Store, clock: ManualClock) -> None:
    ob = make(store, clock)
    with pytest.raises(RuntimeError), store.transaction() as conn:
        store.settings.set("order.O-1", "PAID")
        ob.append("order", {"o": 1}, Priority.CRITICAL, conn=conn)
        raise RuntimeError("crash before commit")
    assert ob.records() == [] and store.settings.get("order.O-1") is None
    with store.transaction() as conn:
        store.settings.set("order.O-1", "PAID")
        ob.append("order", {"o": 1}, Priority.CRITICAL, conn=conn)
    assert len(ob.records()) == 1 and store.settings.get("order.O-1") == "PAID"
    with pytest.raises(ValueError, match="no transaction"):
        ob.append("order", {}, Priority.CRITICAL, conn=sqlite3.connect(":memory:"))


def test_due_orders_by_priority_then_seq_and_resends_only_when_told(
    store: Store, clock: ManualClock
) -> None:
    ob = make(store, clock, ack_timeout_s=30.0)
    low = ob.append("telemetry", {}, Priority.LOW)
    normal = ob.append("reported", {}, Priority.NORMAL)
    crit1 = ob.append("sale", {}, Priority.CRITICAL)
    high = ob.append("alarm", {}, Priority.HIGH)
    crit2 = ob.append("refund_due", {}, Priority.CRITICAL)
    assert [r.seq for r in ob.due(10)] == [crit1.seq, crit2.seq, high.seq, normal.seq, low.seq]
    assert [r.seq for r in ob.due(2)] == [crit1.seq, crit2.seq]
    ob.mark_sent([crit1.seq, high.seq])
    assert [r.seq for r in ob.due(10)] == [crit2.seq, normal.seq, low.seq]
    clock.advance(29)
    assert ob.resend_overdue(10) == 0  # not overdue yet
    clock.advance(2)
    # sent records never become due by themselves (that was the fleet's duplicate storm):
    # a resend round makes the oldest overdue ones due, at most `limit`, in due order
    assert crit1.seq not in [r.seq for r in ob.due(10)]
    assert ob.resend_overdue(1) == 1
    again = ob.due(10)
    assert [r.seq for r in again] == [crit1.seq, crit2.seq, normal.seq, low.seq]
    assert next(r for r in again if r.seq == crit1.seq).attempts == 1
    assert ob.resend_overdue(10) == 1 and high.seq in [r.seq for r in ob.due(10)]
    # a wall clock set back (e.g. NTP after a wrong boot clock) does not freeze resending
    ob.mark_sent([r.seq for r in ob.due(10)])
    assert ob.due(10) == [] and ob.resend_overdue(10, older_than_s=60.0) == 0
    assert ob.resend_overdue(10, now=clock.time() - 5 * 365 * 86400) == 5
    ob.mark_sent([r.seq for r in ob.due(10)])
    assert ob.reset_sent() == 5 and len(ob.due(10)) == 5


def test_resend_overdue_can_take_only_records_an_acknowledged_one_overtook(
    store: Store, clock: ManualClock
) -> None:
    ob = make(store, clock, ack_timeout_s=30.0)
    a, b, c = (ob.append("sale", {"i": i}, Priority.CRITICAL) for i in range(3))
    assert ob.acked_sent_at() is None
    ob.mark_sent([a.seq])
    t_a = clock.time()
    clock.advance(10)
    ob.mark_sent([b.seq, c.seq])
    t_bc = clock.time()
    clock.advance(10)
    assert ob.ack_records([(b.event_id, b.seq)]) == 1
    assert ob.acked_sent_at() == t_bc
    clock.advance(30)
    # a was sent before b, which the province acked: a is overtaken; c (sent with b) is not
    assert ob.resend_overdue(10, sent_before=ob.acked_sent_at()) == 1
    assert [r.seq for r in ob.due(10)] == [a.seq]
    assert ob.resend_overdue(10) == 1 and [r.seq for r in ob.due(10)] == [a.seq, c.seq]
    # a replayed ack (event id and seq do not match a record) moves nothing
    ob.ack_records([("other", a.seq)])
    assert ob.acked_sent_at() == t_bc and t_a < t_bc
    # a record sent twice: the ack may answer either copy, so it does not count
    ob.mark_sent([a.seq, c.seq])
    clock.advance(5)
    assert ob.ack_records([(a.event_id, a.seq)]) == 1 and ob.acked_sent_at() == t_bc
    # a record acked before its first send was written back counts as sent now
    d = ob.append("sale", {"i": 3}, Priority.CRITICAL)
    assert ob.ack_records([(d.event_id, d.seq)]) == 1 and ob.acked_sent_at() == clock.time()


def test_due_after_continues_the_due_order_from_a_cursor(store: Store, clock: ManualClock) -> None:
    ob = make(store, clock)
    crit = [ob.append("sale", {"i": i}, Priority.CRITICAL) for i in range(3)]
    high = ob.append("alarm", {}, Priority.HIGH)
    low = ob.append("telemetry", {}, Priority.LOW)
    full = [r.seq for r in ob.due(10)]
    assert full == [c.seq for c in crit] + [high.seq, low.seq]
    first = ob.due(2)
    ob.mark_sent([r.seq for r in first])
    last = first[-1]
    rest = ob.due_after(last.priority, last.seq, 10)
    assert [r.seq for r in rest] == full[2:]  # same order as due(), without rescanning
    assert [r.seq for r in ob.due_after(last.priority, last.seq, 2)] == full[2:4]
    ob.mark_sent([crit[2].seq])
    assert [r.seq for r in ob.due_after(last.priority, last.seq, 10)] == [high.seq, low.seq]


def test_ack_removes_idempotently(store: Store, clock: ManualClock) -> None:
    ob = make(store, clock)
    recs = [ob.append("sale", {"i": i}, Priority.CRITICAL) for i in range(3)]
    assert ob.last_ack_at() is None
    ob.mark_sent([r.seq for r in recs])  # PUBACKed: still there
    assert len(ob.records()) == 3
    assert ob.ack([recs[0].event_id, recs[2].event_id, "unknown"]) == 2
    assert ob.ack([recs[0].event_id]) == 0
    assert [r.seq for r in ob.records()] == [recs[1].seq]
    assert ob.last_ack_at() == clock.time()
    assert ob.depth()[Priority.CRITICAL] == 1 and ob.ack([]) == 0


def test_coalesce_low(store: Store, clock: ManualClock) -> None:
    ob = make(store, clock)
    a = ob.coalesce("telemetry", {"t": 1})
    ob.mark_sent([a.seq])  # in flight: kept until acked or timed out
    b = ob.coalesce("telemetry", {"t": 2})
    c = ob.coalesce("telemetry", {"t": 3})
    assert [r.seq for r in ob.records()] == [a.seq, c.seq] and b.seq < c.seq
    assert ob.depth()[Priority.LOW] == 2


def test_budget_drops_low_then_normal_oldest_first_never_high_or_critical(
    store: Store, clock: ManualClock
) -> None:
    probe = make(store, clock)
    one = probe.append("telemetry", {"pad": "x" * 900}, Priority.LOW)
    row = probe.size_bytes()
    probe.ack([one.event_id])
    assert probe.size_bytes() == 0
    ob = make(store, clock, budget_bytes=row * 10 + row // 2, critical_reserve_bytes=0)
    body = {"pad": "x" * 900}
    crit = [ob.append("sale", body, Priority.CRITICAL) for _ in range(2)]
    high = [ob.append("stock", body, Priority.HIGH) for _ in range(2)]
    normal = [ob.append("reported", body, Priority.NORMAL) for _ in range(3)]
    low = [ob.append("telemetry", body, Priority.LOW) for _ in range(3)]
    assert sum(ob.depth().values()) == 10 and ob.dropped()[Priority.LOW] == 0
    # full: a new LOW pushes out the oldest LOW
    low.append(ob.append("telemetry", body, Priority.LOW))
    assert ob.get(low[0].event_id) is None and ob.get(low[1].event_id) is not None
    assert ob.dropped()[Priority.LOW] == 1
    # a new NORMAL pushes out LOW first (oldest first) ...
    normal.append(ob.append("reported", body, Priority.NORMAL))
    assert ob.get(low[1].event_id) is None and ob.dropped()[Priority.LOW] == 2
    # ... a CRITICAL takes the remaining LOW, then the oldest NORMAL
    crit += [ob.append("order", body, Priority.CRITICAL) for _ in range(3)]
    assert ob.depth()[Priority.LOW] == 0 and ob.dropped()[Priority.LOW] == 4
    assert ob.get(normal[0].event_id) is None and ob.dropped()[Priority.NORMAL] == 1
    # a new LOW cannot push out NORMAL: it is dropped itself (counted) and refused
    with pytest.raises(OutboxFull):
        ob.append("telemetry", body, Priority.LOW)
    assert ob.dropped()[Priority.LOW] == 5
    # fill with CRITICAL until only HIGH + CRITICAL remain; then refuse, never drop them
    while ob.depth()[Priority.NORMAL]:
        crit.append(ob.append("sale", body, Priority.CRITICAL))
    with pytest.raises(OutboxFull):
        ob.append("sale", body, Priority.CRITICAL)
    with pytest.raises(OutboxFull):
        ob.append("alarm", body, Priority.HIGH)
    for r in crit + high:
        assert ob.get(r.event_id) is not None
    assert ob.dropped()[Priority.CRITICAL] == 0 and ob.dropped()[Priority.HIGH] == 0
    assert ob.size_bytes() <= ob.budget_bytes
    # the province acknowledges: room again
    ob.ack([r.event_id for r in crit[:2]])
    ob.append("sale", body, Priority.CRITICAL)


def test_critical_reserve_beyond_budget(store: Store, clock: ManualClock) -> None:
    ob = make(store, clock, budget_bytes=3000, critical_reserve_bytes=3000)
    body = {"pad": "x" * 900}
    ob.append("alarm", body, Priority.HIGH)
    ob.append("alarm", body, Priority.HIGH)
    with pytest.raises(OutboxFull):
        ob.append("alarm", body, Priority.HIGH)
    ob.append("sale", body, Priority.CRITICAL)  # over the budget, inside the reserve
    assert ob.size_bytes() > 3000


def test_group_commit_is_one_transaction(store: Store, clock: ManualClock) -> None:
    ob = make(store, clock)
    recs = ob.append_many(
        [OutboxItem("stock", {"slot": i}, Priority.HIGH) for i in range(50)]
        + [("telemetry", {"t": 1}, Priority.LOW, "tele-1")]
    )
    assert [r.seq for r in recs] == list(range(1, 52)) and recs[-1].event_id == "tele-1"
    with pytest.raises(ValueError):
        ob.append_many([("stock", {}, Priority.HIGH), ("bogus", {}, Priority.HIGH)])
    with pytest.raises(ValueError):  # a failure in the middle leaves nothing behind
        ob.append_many([("stock", {}, Priority.HIGH), ("stock", {"x": object()}, Priority.HIGH)])
    assert len(ob.records()) == 51


def test_write_failure_is_outbox_write_error(store: Store, clock: ManualClock) -> None:
    ob = make(store, clock)
    with store.transaction() as c:
        c.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON outbox "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    with pytest.raises(OutboxWriteError, match="disk full"):
        ob.append("sale", {}, Priority.CRITICAL)
    store.close()
    with pytest.raises(OutboxWriteError):
        ob.append("sale", {}, Priority.CRITICAL)


CHILD = """
import sys
from pathlib import Path
from kiosk.clock import SystemClock
from kiosk.store import open_store
from kiosk.sync.outbox import Outbox, Priority
from kiosk.sync.topics import Topics

store = open_store(Path(sys.argv[1]))
ob = Outbox(store, Topics("AH-341524-0007"), SystemClock())
print("ready", flush=True)
for i in range(1000):
    prio = Priority.CRITICAL if i % 3 else Priority.HIGH
    r = ob.append("sale" if prio is Priority.CRITICAL else "stock", {"i": i}, prio)
    print(r.seq, r.event_id, flush=True)
print("done", flush=True)
"""


def test_kill_9_loses_nothing_that_was_acknowledged(tmp_path: Path) -> None:
    env = dict(os.environ)
    root = str(Path(kiosk.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert child.stdout is not None
    printed: list[tuple[int, str]] = []
    try:
        assert child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 20
        while len(printed) < 200 and time.monotonic() < deadline:
            line = child.stdout.readline().split()
            if not line or line[0] == "done":
                break
            printed.append((int(line[0]), line[1]))
        child.send_signal(signal.SIGKILL)
        for rest in child.stdout:  # whatever it printed before dying was also acknowledged
            parts = rest.split()
            if len(parts) == 2:
                printed.append((int(parts[0]), parts[1]))
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert 200 <= len(printed) < 1000, len(printed)  # killed in the middle
    with open_store(tmp_path) as s:
        ob = Outbox(s, Topics(KIOSK), ManualClock())
        have = {r.seq: r.event_id for r in ob.records()}
        for seq, eid in printed:
            assert have.get(seq) == eid, f"acknowledged record {seq} lost"
        seqs = sorted(have)
        assert seqs == list(range(1, len(seqs) + 1))  # consistent, no holes
        assert ob.last_seq() >= seqs[-1]
        nxt = ob.append("sale", {}, Priority.CRITICAL)
        assert nxt.seq == ob.last_seq() > max(s for s, _ in printed)
        assert sum(ob.depth().values()) == len(have) + 1  # triggers kept the stats exact
        json.dumps(ob.dropped())  # plain ints


# --- due_rows and the read cache (appended) ---------------------------------------------------


def _rows(ob: Outbox, **kw: object) -> list[tuple[int, str, bytes, int]]:
    return ob.due_rows(1000, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("cache_bytes", [0, 16 * 1024 * 1024, 1500])
def test_due_rows_match_due_and_due_after(
    store: Store, clock: ManualClock, cache_bytes: int
) -> None:
    ob = make(store, clock, ack_timeout_s=10.0, cache_bytes=cache_bytes)
    for i, p in enumerate([Priority.LOW, Priority.CRITICAL, Priority.NORMAL, Priority.HIGH] * 3):
        ob.append("sale" if p is Priority.CRITICAL else "telemetry", {"i": i}, p)
    ob.mark_sent([ob.due(1)[0].seq])  # one sent: not due until resent
    want = [(r.seq, r.topic, r.payload, int(r.priority)) for r in ob.due(1000)]
    assert _rows(ob) == want and len(want) == 11
    for k in range(len(want)):
        after = (want[k][3], want[k][0])
        got = ob.due_rows(1000, after=after)
        assert got == [
            (r.seq, r.topic, r.payload, int(r.priority)) for r in ob.due_after(*after, 1000)
        ]
        assert got == want[k + 1 :]
    assert ob.due_rows(3) == want[:3]
    assert ob.due_rows(4, after=(want[1][3], want[1][0])) == want[2:6]
    clock.advance(11.0)
    assert len(_rows(ob)) == 11  # not due again by itself (kiosk.sync.pacing.ResendSchedule)
    assert ob.resend_overdue(5) == 1 and len(_rows(ob)) == 12


def test_due_rows_never_serve_deleted_or_rolled_back_records(
    store: Store, clock: ManualClock
) -> None:
    ob = make(store, clock)
    a = ob.append("sale", {"n": 1}, Priority.CRITICAL, event_id="a")
    ob.append("sale", {"n": 2}, Priority.CRITICAL, event_id="b")
    assert ob.ack(["a"]) == 1
    assert [r[0] for r in _rows(ob)] == [a.seq + 1]
    # a record appended in a transaction that rolls back is never cached: its seq is reused
    with pytest.raises(RuntimeError), store.transaction() as c:
        ob.append("sale", {"n": 3}, Priority.CRITICAL, event_id="c", conn=c)
        raise RuntimeError("roll back")
    d = ob.append("sale", {"n": 4}, Priority.CRITICAL, event_id="d")
    rows = _rows(ob)
    assert [r[0] for r in rows] == [a.seq + 1, d.seq]
    assert rows[-1][2] == d.payload and json.loads(d.payload)["event_id"] == "d"
    # telemetry coalescing deletes the old record: it is not served either
    ob.coalesce("telemetry", {"t": 1})
    t2 = ob.coalesce("telemetry", {"t": 2})
    assert [r[0] for r in _rows(ob)][-1] == t2.seq
    assert len(_rows(ob)) == 3


def test_read_cache_is_bounded_and_emptied_by_mark_sent_and_ack(
    store: Store, clock: ManualClock
) -> None:
    ob = make(store, clock, cache_bytes=1000)
    recs = ob.append_many([("sale", {"n": i}, Priority.CRITICAL) for i in range(10)])
    assert 0 < ob._cache_size <= 1000 and 0 < len(ob._cache) < 10
    assert all(json.loads(v[1])["seq"] == s for s, v in ob._cache.items())
    assert [r[0] for r in _rows(ob)] == [r.seq for r in recs]  # misses come from SQLite
    ob.mark_sent([recs[0].seq, recs[1].seq])
    ob.ack([recs[2].event_id])
    assert not {recs[0].seq, recs[1].seq, recs[2].seq} & set(ob._cache)
    assert ob._cache_size == sum(len(v[1]) for v in ob._cache.values())
