"""Schema migrations: from every earlier version to the latest, data kept, schema identical."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from kiosk.core.stock import StockReason
from kiosk.store import (
    CORRUPT_MARKER,
    DB_FILENAME,
    LATEST_VERSION,
    MIGRATIONS,
    Migration,
    SchemaTooNew,
    Store,
    StoreError,
    migrate,
    open_store,
)
from kiosk.store.migrations import current_version


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


# What software at each schema version would have written, in that version's own SQL.
def _seed_v1(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO settings VALUES ('kiosk_id', 'AH-341524-0007')")
    conn.execute("INSERT INTO catalog_meta VALUES (1, 3, 1700000000.0)")
    conn.execute(
        "INSERT INTO catalog_product VALUES ('A', '六安瓜片', 'Guapian tea', 'FP-1', '金寨县', "
        "'Jinzhai', '341524', '合作社', 'Co-op', 'tea', 1500, '250克/罐', '250 g', 365, 'a.png')"
    )
    conn.execute("INSERT INTO planogram_meta VALUES (1, 2, 1700000000.0)")
    conn.execute("INSERT INTO planogram_slot VALUES (1, 1, 0, 'spiral', 10, 'A', 1, 1)")
    conn.execute("INSERT INTO planogram_slot VALUES (2, 1, 1, 'locker', 1, NULL, 1, 2)")
    conn.execute("INSERT INTO stock VALUES (1, 4)")
    conn.execute("INSERT INTO stock VALUES (2, 0)")
    conn.execute(
        "INSERT INTO stock_log (slot_no, delta, level_after, reason, ref, at) "
        "VALUES (1, 5, 5, 'restock', 'r1', 1700000001.0), (1, -1, 4, 'sale', 'o1', 1700000002.0)"
    )


def _check_v1(store: Store) -> None:
    assert store.settings.get("kiosk_id") == "AH-341524-0007"
    cat = store.catalog.load()
    assert cat.version == 3
    assert cat["A"].price_fen == 1500 and cat["A"].name_zh == "六安瓜片"
    pg = store.planogram.load()
    assert pg.version == 2 and pg.slots[1].product_id == "A" and pg.slots[2].product_id is None
    assert store.stock.levels() == {1: 4, 2: 0}
    assert [(e.delta, e.reason) for e in store.stock.log(1)] == [
        (-1, StockReason.SALE),
        (5, StockReason.RESTOCK),
    ]


def _seed_v2(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO counters VALUES ('boot', 41), ('tx', 1000)")


def _check_v2(store: Store) -> None:
    assert store.counters.next_value("boot") == 42
    assert store.counters.next_value("tx") == 1001


def _seed_v3(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO counters VALUES ('outbox_seq', 7)")
    conn.execute(
        "INSERT INTO outbox (seq, event_id, kind, topic, priority, payload, created_at) VALUES "
        "(6, 'e6', 'sale', 'kiosk/v1/AH-341524-0007/events/sale', 0, X'7B7D', 1700000003.0), "
        "(7, 'e7', 'telemetry', 'kiosk/v1/AH-341524-0007/telemetry', 3, X'7B7D', 1700000004.0)"
    )
    conn.execute("UPDATE outbox SET attempts = 2, last_sent_at = 1700000005.0 WHERE seq = 6")
    conn.execute("INSERT INTO sync_applied VALUES ('catalog', 4, 1700000000.0, 'abcd')")
    conn.execute("INSERT INTO sync_nonce VALUES ('nonce-0001', 1700003600.0, 1700000000.0)")


def _check_v3(store: Store) -> None:
    from kiosk.clock import ManualClock
    from kiosk.sync.outbox import Outbox, Priority
    from kiosk.sync.topics import Topics

    ob = Outbox(store, Topics("AH-341524-0007"), ManualClock())
    recs = ob.records()
    assert [(r.seq, r.event_id, r.priority, r.attempts) for r in recs] == [
        (6, "e6", Priority.CRITICAL, 2),
        (7, "e7", Priority.LOW, 0),
    ]
    assert recs[0].payload == b"{}" and recs[0].last_sent_at == 1700000005.0
    assert ob.depth()[Priority.CRITICAL] == 1 and ob.depth()[Priority.LOW] == 1
    assert ob.append("order", {"x": 1}, Priority.CRITICAL).seq == 8
    with store.read() as c:
        assert c.execute("SELECT version FROM sync_applied").fetchall() == [(4,)]
        assert c.execute("SELECT nonce FROM sync_nonce").fetchall() == [("nonce-0001",)]


SEEDS: dict[int, tuple[Callable[[sqlite3.Connection], None], Callable[[Store], None]]] = {
    1: (_seed_v1, _check_v1),
    2: (_seed_v2, _check_v2),
    3: (_seed_v3, _check_v3),
}


def test_every_migration_has_seed_data() -> None:
    assert sorted(SEEDS) == [m.version for m in MIGRATIONS]
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST_VERSION + 1))


def _schema(path: Path) -> list[tuple[str, str, str]]:
    conn = _connect(path)
    try:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
            "ORDER BY type, name"
        ).fetchall()
    finally:
        conn.close()
    return [(t, n, " ".join((s or "").split())) for t, n, s in rows]


@pytest.mark.parametrize("start", range(len(MIGRATIONS)))
def test_migrate_from_each_earlier_version(tmp_path: Path, start: int) -> None:
    old_dir, fresh_dir = tmp_path / "old", tmp_path / "fresh"
    old_dir.mkdir()
    conn = _connect(old_dir / DB_FILENAME)
    assert migrate(conn, target=start) == start
    for v in range(1, start + 1):
        with conn:
            conn.execute("BEGIN")
            SEEDS[v][0](conn)
    conn.close()

    with open_store(old_dir) as s:
        assert s.schema_version() == LATEST_VERSION
        for v in range(1, start + 1):
            SEEDS[v][1](s)
        with s.read() as c:
            applied = [r[0] for r in c.execute("SELECT version FROM schema_version ORDER BY 1")]
            assert applied == list(range(1, LATEST_VERSION + 1))
            assert c.execute("PRAGMA foreign_key_check").fetchall() == []
            assert c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    open_store(fresh_dir).close()
    assert _schema(old_dir / DB_FILENAME) == _schema(fresh_dir / DB_FILENAME)


def test_migrate_is_idempotent_and_stepwise(tmp_path: Path) -> None:
    conn = _connect(tmp_path / "x.db")
    assert current_version(conn) == 0
    for v in range(1, LATEST_VERSION + 1):
        assert migrate(conn, target=v) == v
    assert migrate(conn) == LATEST_VERSION
    with pytest.raises(StoreError, match="downgrad"):
        migrate(conn, target=0)
    conn.close()


def test_database_newer_than_code_is_refused_and_untouched(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    conn = _connect(tmp_path / DB_FILENAME)
    conn.execute(
        "INSERT INTO schema_version VALUES (?, 0, 'from the future')", (LATEST_VERSION + 1,)
    )
    conn.close()
    before = (tmp_path / DB_FILENAME).read_bytes()
    with pytest.raises(SchemaTooNew, match=f"version {LATEST_VERSION + 1}"):
        open_store(tmp_path)
    assert (tmp_path / DB_FILENAME).read_bytes() == before
    assert not (tmp_path / CORRUPT_MARKER).exists()  # not corrupt: just newer


def test_callable_migration_and_failed_migration_rolls_back(tmp_path: Path) -> None:
    def add_table(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE extra (x INTEGER)")
        conn.execute("INSERT INTO extra VALUES (1)")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x INTEGER)")
        raise RuntimeError("migration bug")

    ok = [*MIGRATIONS, Migration(LATEST_VERSION + 1, "extra", add_table)]
    bad = [*ok, Migration(LATEST_VERSION + 2, "broken", broken)]
    conn = _connect(tmp_path / "x.db")
    with pytest.raises(RuntimeError, match="migration bug"):
        migrate(conn, migrations=bad)
    assert current_version(conn) == LATEST_VERSION + 1  # each migration is its own transaction
    assert conn.execute("SELECT x FROM extra").fetchall() == [(1,)]
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "half" not in names
    assert not conn.in_transaction
    conn.close()


def test_migration_list_must_be_in_order(tmp_path: Path) -> None:
    conn = _connect(tmp_path / "x.db")
    with pytest.raises(StoreError, match="out of order"):
        migrate(conn, migrations=[MIGRATIONS[1]])
    conn.close()


# --- v4: sales (kiosk.store.orders) -------------------------------------------------------


def _seed_v4(conn: sqlite3.Connection) -> None:
    import json

    from kiosk.store.orders import order_to_dict
    from tests.support.store import sample_order

    body = json.dumps(order_to_dict(sample_order()))
    conn.execute(
        "INSERT INTO orders VALUES ('AH-341524-0007-00001', 1, 'awaiting_payment', ?, 1.0, 2.0)",
        (body,),
    )
    conn.execute("INSERT INTO reservations VALUES ('AH-341524-0007-00001', 1, 2)")
    conn.execute(
        "INSERT INTO refunds (order_id, reason, key_ref, provider_ref, amount_fen, created_at) "
        "VALUES ('AH-341524-0007-00001', 'not_delivered', '', 'wx1', 500, 3.0)"
    )
    conn.execute("INSERT INTO alarms (kind, detail, at) VALUES ('slot_fault', 'jam', 4.0)")
    conn.execute("INSERT INTO test_vends VALUES (4278190081, 1, 'vend', 'DELIVERED', 5.0, 6.0)")


def _check_v4(store: Store) -> None:
    from kiosk.store.orders import OrderRepo
    from tests.support.store import sample_order

    repo = OrderRepo(store)
    assert repo.get("AH-341524-0007-00001") == sample_order()
    assert [o.order_id for o in repo.unfinished()] == ["AH-341524-0007-00001"]
    assert repo.reserved() == {1: 2}
    assert [(r.reason, r.amount_fen) for r in repo.refunds()] == [("not_delivered", 500)]
    assert [a.kind for a in repo.alarms()] == ["slot_fault"]
    assert repo.test_vends() == [(4278190081, 1, "vend", "DELIVERED")]


SEEDS[4] = (_seed_v4, _check_v4)


# --- v5: store identity -------------------------------------------------------------------


def _seed_v5(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE store_identity SET epoch = '7K2Q', origin = 'new' WHERE id = 1")


def _check_v5(store: Store) -> None:
    assert store.epoch == "7K2Q"
    assert store.identity()["origin"] == "new"


SEEDS[5] = (_seed_v5, _check_v5)


# --- v6: chilled goods -----------------------------------------------------------------------


def _seed_v6(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO catalog_product VALUES ('M', '酸奶', 'Yoghurt', 'FP-2', '金寨县', "
        "'Jinzhai', '341524', '合作社', 'Co-op', 'health', 500, '200克', '200 g', 14, '', 6.5)"
    )


def _check_v6(store: Store) -> None:
    cat = store.catalog.load()
    assert cat["M"].chilled_max_c == 6.5
    assert cat["A"].chilled_max_c is None  # a product from before v6 is not chilled


SEEDS[6] = (_seed_v6, _check_v6)


def test_v5_gives_a_new_store_a_random_epoch_and_counter_bases(tmp_path: Path) -> None:
    from kiosk.core.payment import is_store_epoch
    from kiosk.store.migrations import RANDOM_COUNTER_BASE

    epochs, bases = set(), set()
    for n in range(6):
        with open_store(tmp_path / f"s{n}") as s:
            assert is_store_epoch(s.epoch) and s.identity()["origin"] == "new"
            epochs.add(s.epoch)
            base = s.counters.current("order_seq")
            assert 0 <= base < RANDOM_COUNTER_BASE
            bases.add(base)
            assert 0 <= s.counters.current("test_vend_tx") < RANDOM_COUNTER_BASE
    assert len(epochs) == 6 and len(bases) == 6  # 20 and 22 random bits: no repeats in 6


def test_v5_on_a_store_with_orders_keeps_its_counters(tmp_path: Path) -> None:
    conn = _connect(tmp_path / DB_FILENAME)
    migrate(conn, target=4)
    conn.execute("INSERT INTO counters VALUES ('order_seq', 12)")
    conn.close()
    with open_store(tmp_path) as s:
        assert s.counters.current("order_seq") == 12
        assert s.identity()["origin"] == "new"  # no orders row: counters kept, origin new
