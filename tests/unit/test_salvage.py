"""`kiosk store recover` salvages a corrupt store into a fresh one with a new epoch: readable rows
are carried forward, and the counters that name things outside the store (order ids, vend tx
ids the board remembers) never repeat (issue: store integrity, finding 1)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kiosk.clock import ManualClock
from kiosk.core.payment import make_order_id, order_epoch
from kiosk.core.sale import make_tx
from kiosk.store import StoreCorrupt, StoreError, open_store, recover_store
from kiosk.store.db import CORRUPT_MARKER, DB_FILENAME
from kiosk.store.salvage import TX_MARGIN


def _index_page(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT pageno FROM dbstat WHERE name IN "
            "(SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'alarms') "
            "OR name = 'outbox_due'"
        ).fetchall()
    finally:
        conn.close()
    return int(rows[0][0])


def _smash_page(db: Path, page: int) -> None:
    data = bytearray(db.read_bytes())
    data[(page - 1) * 4096 : page * 4096] = b"\xde\xad" * 2048
    db.write_bytes(data)


def _store_with_history(data: Path) -> tuple[str, int, int]:
    """A store that sold orders (its counter and a few order rows), raised alarms and queued
    outbox records; returns (epoch, last order seq, last outbox seq)."""
    with open_store(data) as s:
        epoch = s.epoch
        with s.transaction() as conn:
            for _ in range(5):
                seq = conn.execute(
                    "UPDATE counters SET value = value + 1 WHERE name = 'order_seq' RETURNING value"
                ).fetchone()[0]
                oid = make_order_id("AH-340100-0001", seq, epoch)
                conn.execute(
                    "INSERT INTO orders VALUES (?, ?, 'completed', '{}', 1.0, 1.0)", (oid, seq)
                )
                conn.execute(
                    "INSERT INTO alarms (kind, order_id, detail, at) VALUES ('x', ?, 'd', 1.0)",
                    (oid,),
                )
        from kiosk.sync.outbox import Outbox, Priority
        from kiosk.sync.topics import Topics

        ob = Outbox(s, Topics("AH-340100-0001"), ManualClock())
        last_outbox = 0
        for n in range(3):
            last_outbox = ob.append("technician", {"n": n}, Priority.HIGH).seq
        return epoch, int(seq), last_outbox


def test_recover_carries_rows_forward_and_never_repeats_an_id(tmp_path: Path) -> None:
    data = tmp_path / "data"
    epoch, last_seq, last_outbox = _store_with_history(data)
    db = data / DB_FILENAME
    _smash_page(db, _index_page(db))
    with pytest.raises(StoreCorrupt):
        open_store(data)
    assert recover_store(data) is not None
    assert not (data / CORRUPT_MARKER).exists()
    with open_store(data) as s:
        assert s.epoch != epoch  # a new epoch: new order ids cannot repeat old ones
        ident = s.identity()
        assert ident["origin"] == "recovered" and epoch in str(ident["detail"])
        with s.read() as c:
            assert c.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 5
            assert c.execute("SELECT COUNT(*) FROM alarms").fetchone()[0] == 5
            assert c.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 3
        nxt = s.counters.next_value("order_seq")
        assert nxt == last_seq + TX_MARGIN + 1  # past anything a lost WAL tail may have used
        assert s.counters.next_value("outbox_seq") == last_outbox + 1
        old_ids = {make_order_id("AH-340100-0001", n, epoch) for n in range(1, last_seq + 1)}
        new_id = make_order_id("AH-340100-0001", nxt, s.epoch)
        assert new_id not in old_ids and order_epoch(new_id) == s.epoch
        # every tx the new store can give an order is above every tx of the old store
        assert make_tx(nxt, 0, 0) > make_tx(last_seq, 31, 7)


def test_recover_with_nothing_readable_still_gets_a_new_epoch(tmp_path: Path) -> None:
    data = tmp_path / "data"
    epoch, _, _ = _store_with_history(data)
    (data / DB_FILENAME).write_bytes(b"garbage" * 1000)
    with pytest.raises(StoreCorrupt):
        open_store(data)
    recover_store(data)
    with open_store(data) as s:
        assert s.epoch != epoch
        assert '"readable": false' in str(s.identity()["detail"])
        with s.read() as c:
            assert c.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 0


def test_recover_refuses_when_a_database_is_already_back(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _store_with_history(data)
    (data / DB_FILENAME).write_bytes(b"garbage" * 1000)
    with pytest.raises(StoreCorrupt):
        open_store(data)
    (data / DB_FILENAME).write_bytes(b"someone put a file back")
    with pytest.raises(StoreError, match="move it away"):
        recover_store(data)
    assert (data / CORRUPT_MARKER).exists()  # nothing changed


def test_a_moved_aside_store_without_its_marker_is_refused(tmp_path: Path) -> None:
    """Someone deleted the marker by hand: the kiosk must not silently start an empty store."""
    data = tmp_path / "data"
    _store_with_history(data)
    (data / DB_FILENAME).write_bytes(b"garbage" * 1000)
    with pytest.raises(StoreCorrupt):
        open_store(data)
    (data / CORRUPT_MARKER).unlink()
    with pytest.raises(StoreCorrupt, match="marker"):
        open_store(data)
    assert not (data / DB_FILENAME).exists()


def test_recover_keeps_the_stock_feed_mark_below_the_rows_carried(tmp_path: Path) -> None:
    """The stock feed copied rows up to its mark; if the tail of the stock log is lost, new
    rows reuse those ids: the mark comes down to the last row carried, so they are sent."""
    data = tmp_path / "data"
    _store_with_history(data)
    with open_store(data) as s, s.transaction() as conn:
        for n in range(3):
            conn.execute(
                "INSERT INTO stock_log (slot_no, delta, level_after, reason, ref, at) "
                "VALUES (1, 1, ?, 'restock', '', 1.0)",
                (n + 1,),
            )
        # as if rows 4..9 had been copied and then lost with the database's tail
        conn.execute("INSERT INTO settings (key, value) VALUES ('stock_feed.last_id', '9')")
    db = data / DB_FILENAME
    _smash_page(db, _index_page(db))
    with pytest.raises(StoreCorrupt):
        open_store(data)
    assert recover_store(data) is not None
    with open_store(data) as s:
        assert s.settings.get("stock_feed.last_id") == "3"
