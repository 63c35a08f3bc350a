"""The SQLite store: pragmas, repositories, atomic replacement, stock log, corrupt databases."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.clock import ManualClock
from kiosk.core.catalog import Catalog, Category, Product
from kiosk.core.planogram import Planogram, Slot, SlotKind
from kiosk.core.stock import StockChange, StockError, StockReason
from kiosk.store import (
    CORRUPT_MARKER,
    DB_FILENAME,
    LATEST_VERSION,
    PlanogramConflict,
    Store,
    StoreClosed,
    StoreCorrupt,
    StoreError,
    open_store,
    recover_store,
)


def product(pid: str, price: int = 1500) -> Product:
    return Product(
        product_id=pid,
        name_zh="六安瓜片",
        name_en="Lu'an Guapian tea",
        certification_no="FP-2024-0001",
        origin_county_zh="金寨县",
        origin_county_en="Jinzhai County",
        origin_area_code="341524",
        producer_zh="金寨茶叶合作社",
        producer_en="Jinzhai Tea Co-op",
        category=Category.TEA,
        price_fen=price,
        spec_zh="250克/罐",
        spec_en="250 g jar",
        shelf_life_days=365,
        image_ref=f"{pid}.png",
    )


def planogram(version: int = 1, **overrides: tuple[str | None, int]) -> Planogram:
    """Slots 1..4 on board 1 (spirals, capacity 10, products A/B); slot 5 a locker."""
    slots = {
        1: Slot(1, 1, 0, SlotKind.SPIRAL, 10, "A", 1, 1),
        2: Slot(2, 1, 1, SlotKind.SPIRAL, 10, "A", 1, 2),
        3: Slot(3, 1, 2, SlotKind.SPIRAL, 10, "B", 1, 3),
        4: Slot(4, 1, 3, SlotKind.SPIRAL, 10, None, 2, 1),
        5: Slot(5, 2, 0, SlotKind.LOCKER, 1, "B", 3, 1),
    }
    return Planogram.of(version, slots.values())


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(tmp_path: Path, clock: ManualClock) -> Iterator[Store]:
    s = open_store(tmp_path / "data", clock)
    yield s
    s.close()


@pytest.fixture
def stocked(store: Store) -> Store:
    store.catalog.replace(Catalog.of(1, [product("A"), product("B", 2800)]))
    store.planogram.replace(planogram())
    return store


# --- opening ---------------------------------------------------------------------------------


def test_open_creates_dir_and_sets_pragmas(tmp_path: Path) -> None:
    data = tmp_path / "a" / "b"
    with open_store(data) as s:
        assert (data / DB_FILENAME).exists()
        with s.read() as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
        assert s.schema_version() == LATEST_VERSION
    assert s.closed
    with pytest.raises(StoreClosed):
        s.settings.get("x")


def test_reopen_keeps_data(tmp_path: Path) -> None:
    with open_store(tmp_path) as s:
        s.settings.set("kiosk_id", "AH-341524-0007")
    with open_store(tmp_path) as s:
        assert s.settings.get("kiosk_id") == "AH-341524-0007"
        assert s.schema_version() == LATEST_VERSION


# --- catalog ---------------------------------------------------------------------------------


def test_catalog_round_trip(store: Store) -> None:
    assert store.catalog.version() == 0
    assert len(store.catalog.load()) == 0
    cat = Catalog.of(7, [product("A"), product("B", 2800)])
    store.catalog.replace(cat)
    assert store.catalog.version() == 7
    assert store.catalog.load() == cat
    store.catalog.replace(Catalog.of(8, [product("C", 100)]))
    loaded = store.catalog.load()
    assert loaded.version == 8
    assert list(loaded.products) == ["C"]


def test_catalog_replace_is_atomic(store: Store) -> None:
    old = Catalog.of(1, [product("A"), product("B")])
    store.catalog.replace(old)
    bad = product("Z")
    object.__setattr__(bad, "price_fen", 0)  # slip past the core's validation
    new = Catalog.of(2, [product("C"), product("D"), bad, product("E")])
    with pytest.raises(StoreError, match="catalog version 2"):
        store.catalog.replace(new)
    assert store.catalog.load() == old
    assert store.catalog.version() == 1


# --- planogram -------------------------------------------------------------------------------


def test_planogram_round_trip_creates_empty_stock(stocked: Store) -> None:
    assert stocked.planogram.load() == planogram()
    assert stocked.planogram.version() == 1
    assert stocked.stock.levels() == {1: 0, 2: 0, 3: 0, 4: 0, 5: 0}


def test_planogram_replace_keeps_stock_of_remaining_slots(stocked: Store) -> None:
    stocked.stock.fill_to_capacity(1, "r1")
    stocked.stock.fill_to_capacity(3, "r1")
    old = planogram()
    slots = [s for s in old if s.slot_no != 4]  # slot 4 is empty: may go
    slots.append(Slot(6, 1, 3, SlotKind.SPIRAL, 8, "B"))  # takes slot 4's motor
    stocked.planogram.replace(Planogram.of(2, slots))
    assert stocked.stock.levels() == {1: 10, 2: 0, 3: 10, 5: 0, 6: 0}
    assert stocked.planogram.load().version == 2


def test_planogram_refuses_dropping_stocked_slot(stocked: Store) -> None:
    stocked.stock.apply(StockChange(1, 4, StockReason.RESTOCK, "r"))
    stocked.stock.apply(StockChange(2, 4, StockReason.RESTOCK, "r"))
    stocked.stock.apply(StockChange(3, 9, StockReason.RESTOCK, "r"))
    old = planogram()
    changed = [
        # slot 1 gone, slot 2 re-assigned to B, slot 3 shrunk below its level
        Slot(2, 1, 1, SlotKind.SPIRAL, 10, "B", 1, 2),
        Slot(3, 1, 2, SlotKind.SPIRAL, 5, "B", 1, 3),
        old.slots[4],
        old.slots[5],
    ]
    new = Planogram.of(2, changed)
    with pytest.raises(PlanogramConflict) as e:
        stocked.planogram.replace(new)
    assert len(e.value.problems) == 3
    assert "slot 1 holds 4" in str(e.value)
    assert stocked.planogram.load() == old
    assert stocked.stock.levels() == {1: 4, 2: 4, 3: 9, 4: 0, 5: 0}

    stocked.planogram.replace(new, allow_drop_stocked=True)
    assert stocked.planogram.load() == new
    assert stocked.stock.levels() == {2: 0, 3: 5, 4: 0, 5: 0}
    removals = [e for e in stocked.stock.log() if e.reason is StockReason.REMOVAL]
    assert {(e.slot_no, e.delta, e.level_after) for e in removals} == {
        (1, -4, 0),
        (2, -4, 0),
        (3, -4, 5),
    }
    assert all(e.ref == "planogram v2" for e in removals)
    _assert_levels_match_log(stocked)


def test_planogram_slots_may_swap_motors(stocked: Store) -> None:
    old = planogram()
    s1, s2 = old.slots[1], old.slots[2]
    swapped = [
        Slot(1, s2.board, s2.address, s1.kind, s1.capacity, s1.product_id),
        Slot(2, s1.board, s1.address, s2.kind, s2.capacity, s2.product_id),
        *(s for s in old if s.slot_no > 2),
    ]
    stocked.planogram.replace(Planogram.of(2, swapped))
    assert stocked.planogram.load().slots[1].address == s2.address


# --- stock -----------------------------------------------------------------------------------


def _assert_levels_match_log(store: Store) -> None:
    with store.read() as conn:
        sums = dict(conn.execute("SELECT slot_no, SUM(delta) FROM stock_log GROUP BY slot_no"))
    for slot_no, level in store.stock.levels().items():
        assert sums.get(slot_no, 0) == level, slot_no
        log = store.stock.log(slot_no, limit=1)
        if log:
            assert log[0].level_after == level


def test_stock_changes_are_logged(stocked: Store, clock: ManualClock) -> None:
    assert stocked.stock.apply(StockChange(1, 5, StockReason.RESTOCK, "tech-1")) == 5
    clock.advance(10)
    assert stocked.stock.apply(StockChange(1, -1, StockReason.SALE, "order-9")) == 4
    assert stocked.stock.fill_to_capacity(1, "tech-2") == 10
    assert stocked.stock.fill_to_capacity(1, "tech-2") == 10  # full: nothing logged
    assert stocked.stock.set_count(1, 7, "count-1") == 7
    assert stocked.stock.set_count(1, 7, "count-2") == 7  # a confirmed count is logged too
    log = stocked.stock.log(1)
    assert [(e.delta, e.level_after, e.reason, e.ref) for e in reversed(log)] == [
        (5, 5, StockReason.RESTOCK, "tech-1"),
        (-1, 4, StockReason.SALE, "order-9"),
        (6, 10, StockReason.RESTOCK, "tech-2"),
        (-3, 7, StockReason.COUNT_CORRECTION, "count-1"),
        (0, 7, StockReason.COUNT_CORRECTION, "count-2"),
    ]
    assert log[-1].at == clock.time() - 10
    assert stocked.stock.level(1) == 7
    assert stocked.stock.log(2) == []
    assert len(stocked.stock.log(limit=2)) == 2
    _assert_levels_match_log(stocked)


@pytest.mark.parametrize(
    "change",
    [
        StockChange(1, -1, StockReason.SALE, "o"),  # below zero
        StockChange(1, 11, StockReason.RESTOCK, "r"),  # over capacity
        StockChange(1, 0, StockReason.SALE, "o"),  # no change
        StockChange(1, 2, StockReason.SALE, "o"),  # a sale never adds items
        StockChange(99, 1, StockReason.RESTOCK, "r"),  # no such slot
    ],
)
def test_invalid_stock_change_writes_nothing(stocked: Store, change: StockChange) -> None:
    with pytest.raises(StockError):
        stocked.stock.apply(change)
    assert stocked.stock.levels()[1] == 0
    assert stocked.stock.log() == []


def test_stock_never_negative_even_in_sql(stocked: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError), stocked.transaction() as conn:
        conn.execute("UPDATE stock SET level = -1 WHERE slot_no = 1")
    assert stocked.stock.level(1) == 0


def test_unknown_slot_level(stocked: Store) -> None:
    with pytest.raises(StockError, match="slot 42"):
        stocked.stock.level(42)


def test_outer_transaction_groups_changes(stocked: Store) -> None:
    with pytest.raises(RuntimeError), stocked.transaction():
        stocked.stock.apply(StockChange(1, 3, StockReason.RESTOCK, "r"))
        stocked.counters.next_value("tx")
        raise RuntimeError("power cut before the order was saved")
    assert stocked.stock.level(1) == 0
    assert stocked.stock.log() == []
    assert stocked.counters.current("tx") == 0
    # an inner failure rolls back only its savepoint
    with stocked.transaction():
        stocked.stock.apply(StockChange(1, 3, StockReason.RESTOCK, "r"))
        with pytest.raises(StockError):
            stocked.stock.apply(StockChange(2, -1, StockReason.SALE, "o"))
    assert stocked.stock.levels()[1] == 3


# --- settings and counters -------------------------------------------------------------------


def test_settings(store: Store) -> None:
    assert store.settings.get("missing") is None
    assert store.settings.get("missing", "d") == "d"
    store.settings.set("lang", "zh")
    store.settings.set("lang", "en")
    assert store.settings.get("lang") == "en"
    store.settings.set_json("volume", {"level": 3, "名": "音量"})
    assert store.settings.get_json("volume") == {"level": 3, "名": "音量"}
    assert store.settings.get_json("none", []) == []
    store.settings.delete("lang")
    assert store.settings.get("lang") is None
    store.settings.set("broken", "{")
    with pytest.raises(StoreError, match="broken"):
        store.settings.get_json("broken")


def test_counters_are_monotonic_and_durable(tmp_path: Path) -> None:
    with open_store(tmp_path) as s:
        assert s.counters.current("tx") == 0
        assert [s.counters.next_value("tx") for _ in range(3)] == [1, 2, 3]
        assert s.counters.next_value("boot") == 1
    with open_store(tmp_path) as s:
        assert s.counters.next_value("tx") == 4
        assert s.counters.current("boot") == 1


def test_threads_share_the_store(stocked: Store) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(50):
                stocked.counters.next_value("tx")
                stocked.stock.levels()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stocked.counters.current("tx") == 200


# --- corruption ------------------------------------------------------------------------------


def _fill(data: Path) -> None:
    with open_store(data) as s:
        s.catalog.replace(Catalog.of(1, [product(f"P{i}") for i in range(300)]))
        s.planogram.replace(planogram())
        for i in range(200):
            s.settings.set(f"k{i}", "x" * 200)


def _garbage(db: Path) -> None:
    db.write_bytes(b"this is not a database, just garbage bytes " * 200)


def _truncate(db: Path) -> None:
    size = db.stat().st_size
    assert size > 8 * 4096
    with open(db, "r+b") as f:
        f.truncate(size // 2 + 1000)  # in the middle of a page


@pytest.mark.parametrize("damage", [_garbage, _truncate])
def test_corrupt_database_is_moved_aside_and_refused(tmp_path: Path, damage: object) -> None:
    data = tmp_path / "data"
    _fill(data)
    db = data / DB_FILENAME
    damage(db)  # type: ignore[operator]
    original = db.read_bytes()

    with pytest.raises(StoreCorrupt) as e:
        open_store(data, ManualClock(1_790_000_000.0))
    report = e.value.report
    assert not db.exists()
    marker = data / CORRUPT_MARKER
    assert marker.read_text(encoding="utf-8") == report
    moved = [p for p in data.iterdir() if ".corrupt-" in p.name]
    assert moved, list(data.iterdir())
    main = data / "kiosk.db.corrupt-20260921T141320Z"
    assert main in moved
    assert main.read_bytes() == original  # kept untouched for analysis
    assert str(main) in report

    with pytest.raises(StoreCorrupt):  # still out of service, nothing recreated
        open_store(data)
    assert not db.exists()

    assert recover_store(data) == main
    assert not marker.exists()
    assert recover_store(data) is None
    with open_store(data) as s:
        assert s.schema_version() == LATEST_VERSION
        assert s.identity()["origin"] == "recovered"
        # neither file can be read back (the truncation cut sqlite_master): an empty store
        # with a new epoch (tests/unit/test_salvage.py covers carrying rows forward)
        assert s.catalog.version() == 0
    assert main.exists()
    assert main.read_bytes() == original  # salvage read a copy; the evidence is untouched


def test_second_corruption_does_not_overwrite_first(tmp_path: Path) -> None:
    clock = ManualClock()
    paths = []
    for _ in range(2):
        _garbage(tmp_path / DB_FILENAME)
        with pytest.raises(StoreCorrupt):
            open_store(tmp_path, clock)
        p = recover_store(tmp_path)
        assert p is not None and p.exists()
        paths.append(p)
    assert paths[0] != paths[1]


def test_failed_commit_rolls_back_and_store_stays_usable(stocked: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError), stocked.transaction() as conn:
        conn.execute("PRAGMA defer_foreign_keys = ON")  # the violation surfaces at COMMIT
        conn.execute("INSERT INTO stock (slot_no, level) VALUES (99, 1)")
        stocked.stock.apply(StockChange(1, 2, StockReason.RESTOCK, "r"))
    assert stocked.stock.levels() == {1: 0, 2: 0, 3: 0, 4: 0, 5: 0}
    assert stocked.stock.apply(StockChange(1, 2, StockReason.RESTOCK, "r")) == 2


# --- permissions: the data dir 0700, the database files 0600, whatever the umask --------------


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_data_dir_0700_and_database_files_0600(tmp_path: Path, umask: int) -> None:
    """The attack: another local user reads kiosk.db (orders, ledger, keys) because the kiosk
    was started outside systemd with a permissive umask. The files are private anyway."""
    data = tmp_path / "new" / "data"
    with open_store(data) as s:
        with s.transaction() as conn:  # a write: the WAL and SHM files exist now
            conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('k', 'v')")
        assert _mode(data) == 0o700
        for name in (DB_FILENAME, DB_FILENAME + "-wal", DB_FILENAME + "-shm"):
            assert (data / name).exists(), name
            assert _mode(data / name) == 0o600, (name, oct(_mode(data / name)))


def test_loose_existing_dir_and_files_are_tightened(tmp_path: Path, umask: int) -> None:
    data = tmp_path / "data"
    open_store(data).close()
    os.chmod(data, 0o777)
    os.chmod(data / DB_FILENAME, 0o666)
    open_store(data).close()
    assert _mode(data) == 0o700 and _mode(data / DB_FILENAME) == 0o600


def test_corrupt_marker_is_0600(tmp_path: Path, umask: int) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / DB_FILENAME).write_bytes(b"this is not a database " * 200)
    with pytest.raises(StoreCorrupt):
        open_store(data)
    assert _mode(data / CORRUPT_MARKER) == 0o600
    assert _mode(data) == 0o700
    moved = list(data.glob(DB_FILENAME + ".corrupt-*"))
    assert moved and all(_mode(m) == 0o600 for m in moved)
