"""Salvage: carry what can still be read from a moved-aside corrupt database into a fresh store.

Owns: the copy of readable rows from `kiosk.db.corrupt-*` into the new `kiosk.db` that
`kiosk store recover` creates, and the re-basing of the counters whose values name things
outside the store (order sequence -> order ids and vend tx ids the board remembers; test vend
tx ids; outbox sequence; alarm numbers). Must never reuse such a value: every counter ends
above the largest value found in the old file, and the two that name board transactions end
`TX_MARGIN` above it, because the old file may have lost its newest pages (a damaged WAL tail)
while the board still remembers what they described. A row that cannot be read is skipped and
counted, never guessed. The new store always gets a new epoch (migration 5), so even when
nothing at all can be read, new order ids cannot repeat old ones.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TX_MARGIN", "SalvageReport", "salvage_into"]

#: Order (and test vend) sequence numbers skipped after the largest one read back: one order
#: uses up to 256 tx ids, a board remembers at least its last 64; 4,096 orders is far more than
#: a lost WAL tail can hold (the WAL is checkpointed at about 4 MB).
TX_MARGIN = 4096

# Tables never copied: the new store's own schema bookkeeping and identity, and the outbox
# statistics (kept exact by triggers as outbox rows are copied).
_SKIP = frozenset({"schema_version", "store_identity", "outbox_stats", "sqlite_sequence"})
# Parents before children (reservations reference orders); the rest in schema order.
_FIRST = ("orders",)
# counter name -> (SQL giving the largest value in use in the copied tables, margin)
_COUNTER_FLOORS: dict[str, tuple[str, int]] = {
    "order_seq": ("SELECT MAX(seq) FROM orders", TX_MARGIN),
    "test_vend_tx": ("SELECT MAX(tx & 16777215) FROM test_vends", TX_MARGIN),
    "outbox_seq": ("SELECT MAX(seq) FROM outbox", 0),
    "boot": ("SELECT 0", 0),
}


@dataclass
class SalvageReport:
    """What `kiosk store recover` carried forward (printed for the technician, kept in
    store_identity.detail)."""

    source: str
    readable: bool = False
    previous_epoch: str = ""
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows copied
    lost: dict[str, int] = field(default_factory=dict)  # table -> rows (or ranges) unreadable
    counters: dict[str, int] = field(default_factory=dict)  # counter -> value after re-basing
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "readable": self.readable,
            "previous_epoch": self.previous_epoch,
            "rows": self.rows,
            "lost": self.lost,
            "counters": self.counters,
            "error": self.error,
        }


def _open_copy(moved: Path, work: Path) -> sqlite3.Connection:
    """Open a private copy of the moved-aside files (main + WAL), so the WAL's committed pages
    are read too and the evidence stays untouched."""
    target = work / "old.db"
    shutil.copyfile(moved, target)
    for suffix in ("-wal",):
        side = Path(str(moved) + suffix)
        if side.exists():
            shutil.copyfile(side, Path(str(target) + suffix))
    conn = sqlite3.connect(target, isolation_level=None)
    conn.execute("PRAGMA query_only = ON")
    return conn


def _tables(conn: sqlite3.Connection) -> list[tuple[str, bool]]:
    """(name, has_rowid) of every ordinary table in the database's schema."""
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return [(str(n), "WITHOUT ROWID" not in str(s).upper()) for n, s in rows]


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [str(r[1]) for r in conn.execute(f'PRAGMA table_info("{table}")')]


def _read_range(
    old: sqlite3.Connection, table: str, cols: str, lo: int, hi: int, lost: list[int]
) -> list[tuple[object, ...]]:
    """Rows with lo <= rowid <= hi; on a read error split the range, down to single rows."""
    try:
        return old.execute(
            f'SELECT {cols} FROM "{table}" NOT INDEXED WHERE rowid BETWEEN ? AND ? ORDER BY rowid',
            (lo, hi),
        ).fetchall()
    except sqlite3.DatabaseError:
        if lo >= hi:
            lost[0] += 1
            return []
        mid = (lo + hi) // 2
        return _read_range(old, table, cols, lo, mid, lost) + _read_range(
            old, table, cols, mid + 1, hi, lost
        )


def _read_table(
    old: sqlite3.Connection, table: str, cols: str, has_rowid: bool
) -> tuple[list[tuple[object, ...]], int]:
    lost = [0]
    if not has_rowid:
        try:
            return old.execute(f'SELECT {cols} FROM "{table}" NOT INDEXED').fetchall(), 0
        except sqlite3.DatabaseError:
            return [], 1
    try:
        lo_hi = old.execute(f'SELECT MIN(rowid), MAX(rowid) FROM "{table}" NOT INDEXED').fetchone()
    except sqlite3.DatabaseError:
        return [], 1
    if lo_hi is None or lo_hi[0] is None:
        return [], 0
    rows = _read_range(old, table, cols, int(lo_hi[0]), int(lo_hi[1]), lost)
    return rows, lost[0]


def _copy_table(
    old: sqlite3.Connection, new: sqlite3.Connection, table: str, has_rowid: bool, r: SalvageReport
) -> None:
    common = [c for c in _columns(old, table) if c in set(_columns(new, table))]
    if not common:
        return
    cols = ", ".join(f'"{c}"' for c in common)
    rows, lost = _read_table(old, table, cols, has_rowid)
    marks = ", ".join("?" for _ in common)
    copied = 0
    for row in rows:
        try:
            new.execute(f'INSERT OR REPLACE INTO "{table}" ({cols}) VALUES ({marks})', row)
            copied += 1
        except sqlite3.Error:  # a damaged value the new schema's CHECKs refuse
            lost += 1
    r.rows[table] = copied
    if lost:
        r.lost[table] = lost


def _previous_epoch(old: sqlite3.Connection) -> str:
    with contextlib.suppress(sqlite3.DatabaseError):
        row = old.execute("SELECT epoch FROM store_identity WHERE id = 1").fetchone()
        if row is not None:
            return str(row[0])
    return ""


def _rebase_counters(new: sqlite3.Connection, r: SalvageReport) -> None:
    """Each counter: the largest of the copied counter, the values in use in the copied rows
    (and the new store's random base), plus its margin when anything could be read."""
    for name, (sql, margin) in _COUNTER_FLOORS.items():
        (in_use,) = new.execute(sql).fetchone()
        row = new.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        value = max(0 if row is None else int(row[0]), int(in_use or 0))
        if r.readable:
            value += margin
        new.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
        r.counters[name] = value


def salvage_into(moved: Path, new_db: Path) -> SalvageReport:
    """Copy every readable row of the moved-aside database `moved` into the freshly created
    (migrated, empty) database at `new_db`, then re-base the counters and record the result in
    store_identity (origin 'recovered'). One transaction: all of it or nothing."""
    r = SalvageReport(source=str(moved))
    new = sqlite3.connect(new_db, isolation_level=None)
    try:
        new.execute("PRAGMA foreign_keys = OFF")
        new.execute("BEGIN IMMEDIATE")
        with tempfile.TemporaryDirectory(prefix="kiosk-salvage-") as work:
            old: sqlite3.Connection | None = None
            try:
                old = _open_copy(moved, Path(work))
                tables = _tables(old)
                r.readable = True
            except (OSError, sqlite3.DatabaseError) as e:
                r.error = f"{type(e).__name__}: {e}"
                tables = []
            if old is not None:
                r.previous_epoch = _previous_epoch(old)
                new_names = {n for n, _ in _tables(new)}
                order = sorted(tables, key=lambda t: (t[0] not in _FIRST, 0))
                for name, has_rowid in order:
                    if name not in _SKIP and name in new_names:
                        _copy_table(old, new, name, has_rowid, r)
                # the new store's books are checked in full at its first start
                new.execute("DELETE FROM settings WHERE key = 'store.verified_through'")
                # the stock feed's mark (kiosk.sync.stockfeed.MARK): never above the last stock
                # log row carried, or rows written after a lost tail would reuse ids below it
                # and never be sent (the carried rows up to the mark were sent already)
                new.execute(
                    "UPDATE settings SET value = CAST(MIN(CAST(value AS INTEGER), "
                    "(SELECT COALESCE(MAX(id), 0) FROM stock_log)) AS TEXT) "
                    "WHERE key = 'stock_feed.last_id'"
                )
                # reservations of orders that were not readable would hold stock forever
                new.execute(
                    "DELETE FROM reservations WHERE order_id NOT IN (SELECT order_id FROM orders)"
                )
                old.close()
        _rebase_counters(new, r)
        new.execute(
            "UPDATE store_identity SET origin = 'recovered', detail = ? WHERE id = 1",
            (json.dumps(r.as_dict(), sort_keys=True),),
        )
        new.execute("COMMIT")
    except BaseException:
        if new.in_transaction:
            new.execute("ROLLBACK")
        raise
    finally:
        new.close()
    return r
