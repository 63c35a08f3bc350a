"""Repositories: catalog, planogram, stock, settings and counters, stored in SQLite.

Owns: the mapping between the core's records and rows, and the atomicity of each change (a
catalog or planogram is replaced whole or not at all; a stock level changes only together with
its log row). Must never decide business rules itself: the arithmetic of stock is
`kiosk.core.stock.apply_change`, validation of products and slots is the core's. Must never
commit part of a change.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from kiosk.core.catalog import Catalog, Category, Product
from kiosk.core.planogram import Planogram, Slot, SlotKind
from kiosk.core.stock import StockChange, StockError, StockReason, apply_change
from kiosk.store.connection import Database
from kiosk.store.errors import PlanogramConflict, StoreError

__all__ = [
    "CatalogRepo",
    "CounterRepo",
    "PlanogramRepo",
    "SettingsRepo",
    "StockLogEntry",
    "StockRepo",
]

_PRODUCT_COLUMNS = (
    "product_id",
    "name_zh",
    "name_en",
    "certification_no",
    "origin_county_zh",
    "origin_county_en",
    "origin_area_code",
    "producer_zh",
    "producer_en",
    "category",
    "price_fen",
    "spec_zh",
    "spec_en",
    "shelf_life_days",
    "image_ref",
    "chilled_max_c",
)


class CatalogRepo:
    """The catalog in force: its version and its products, one row each."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def version(self) -> int:
        """The applied catalog version, 0 when none was ever applied."""
        with self._db.read() as conn:
            row = conn.execute("SELECT version FROM catalog_meta WHERE id = 1").fetchone()
        return 0 if row is None else int(row[0])

    def replace(self, catalog: Catalog) -> None:
        """Make `catalog` the one in force, atomically: on any error the old one stays."""
        cols = ", ".join(_PRODUCT_COLUMNS)
        marks = ", ".join("?" for _ in _PRODUCT_COLUMNS)
        try:
            with self._db.transaction() as conn:
                conn.execute("DELETE FROM catalog_product")
                for p in catalog:
                    conn.execute(
                        f"INSERT INTO catalog_product ({cols}) VALUES ({marks})", _product_row(p)
                    )
                _set_meta(conn, "catalog_meta", catalog.version, self._db.clock.time())
        except sqlite3.IntegrityError as e:
            raise StoreError(f"catalog version {catalog.version} not stored: {e}") from e

    def load(self) -> Catalog:
        cols = ", ".join(_PRODUCT_COLUMNS)
        with self._db.read() as conn:
            meta = conn.execute("SELECT version FROM catalog_meta WHERE id = 1").fetchone()
            rows = conn.execute(
                f"SELECT {cols} FROM catalog_product ORDER BY product_id"
            ).fetchall()
        version = 0 if meta is None else int(meta[0])
        return Catalog.of(version, (_product_from_row(r) for r in rows))


def _product_row(p: Product) -> tuple[object, ...]:
    return tuple(p.category.value if c == "category" else getattr(p, c) for c in _PRODUCT_COLUMNS)


def _product_from_row(r: tuple[object, ...]) -> Product:
    (pid, nzh, nen, cert, czh, cen, area, pzh, pen, cat, price, szh, sen, life, img, cold) = r
    return Product(
        product_id=str(pid),
        name_zh=str(nzh),
        name_en=str(nen),
        certification_no=str(cert),
        origin_county_zh=str(czh),
        origin_county_en=str(cen),
        origin_area_code=str(area),
        producer_zh=str(pzh),
        producer_en=str(pen),
        category=Category(str(cat)),
        price_fen=_int(price),
        spec_zh=str(szh),
        spec_en=str(sen),
        shelf_life_days=_int(life),
        image_ref=str(img),
        chilled_max_c=_opt_float(cold),
    )


def _int(v: object) -> int:
    if not isinstance(v, int):
        raise StoreError(f"expected an integer in the database, found {v!r}")
    return v


def _opt_float(v: object) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise StoreError(f"expected a number or NULL in the database, found {v!r}")
    return float(v)


def _set_meta(conn: sqlite3.Connection, table: str, version: int, at: float) -> None:
    conn.execute(
        f"INSERT INTO {table} (id, version, applied_at) VALUES (1, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET version = excluded.version, "
        "applied_at = excluded.applied_at",
        (version, at),
    )


class PlanogramRepo:
    """The planogram in force. Replacing it keeps the stock of every slot that stays."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def version(self) -> int:
        with self._db.read() as conn:
            row = conn.execute("SELECT version FROM planogram_meta WHERE id = 1").fetchone()
        return 0 if row is None else int(row[0])

    def load(self) -> Planogram:
        with self._db.read() as conn:
            meta = conn.execute("SELECT version FROM planogram_meta WHERE id = 1").fetchone()
            rows = conn.execute(
                "SELECT slot_no, board, address, kind, capacity, product_id, row, col "
                "FROM planogram_slot ORDER BY slot_no"
            ).fetchall()
        version = 0 if meta is None else int(meta[0])
        slots = [
            Slot(
                slot_no=int(r[0]),
                board=int(r[1]),
                address=int(r[2]),
                kind=SlotKind(r[3]),
                capacity=int(r[4]),
                product_id=r[5],
                row=int(r[6]),
                col=int(r[7]),
            )
            for r in rows
        ]
        return Planogram.of(version, slots)

    def replace(self, planogram: Planogram, *, allow_drop_stocked: bool = False) -> None:
        """Make `planogram` the one in force, atomically.

        Slots that stay keep their stock; new slots start at level 0. A slot that still holds
        items and would be removed, given another product, or shrunk below its level is refused
        with PlanogramConflict, unless `allow_drop_stocked` (a technician took the items out):
        then the items are logged as a REMOVAL, so that every level stays the sum of its log.
        Whether the version is newer than the applied one is the caller's check.
        """
        ref = f"planogram v{planogram.version}"
        now = self._db.clock.time()
        with self._db.transaction() as conn:
            old = {
                int(r[0]): (int(r[1]), r[2], int(r[3]))
                for r in conn.execute(
                    "SELECT p.slot_no, COALESCE(s.level, 0), p.product_id, p.capacity "
                    "FROM planogram_slot p LEFT JOIN stock s USING (slot_no)"
                )
            }
            problems: list[str] = []
            removals: list[tuple[int, int, int]] = []  # slot, items removed, level after
            for slot_no, (level, product_id, _cap) in old.items():
                if level == 0:
                    continue
                new = planogram.slots.get(slot_no)
                if new is None:
                    problems.append(f"slot {slot_no} holds {level} and would be removed")
                    removals.append((slot_no, level, 0))
                elif new.product_id != product_id:
                    problems.append(
                        f"slot {slot_no} holds {level} of {product_id!r} "
                        f"and would be given {new.product_id!r}"
                    )
                    removals.append((slot_no, level, 0))
                elif level > new.capacity:
                    problems.append(
                        f"slot {slot_no} holds {level}, more than its new capacity {new.capacity}"
                    )
                    removals.append((slot_no, level - new.capacity, new.capacity))
            if problems and not allow_drop_stocked:
                raise PlanogramConflict(problems)
            for slot_no, removed, after in removals:
                conn.execute("UPDATE stock SET level = ? WHERE slot_no = ?", (after, slot_no))
                conn.execute(
                    "INSERT INTO stock_log (slot_no, delta, level_after, reason, ref, at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (slot_no, -removed, after, StockReason.REMOVAL.value, ref, now),
                )
            gone = [(n,) for n in old if n not in planogram.slots]
            conn.executemany("DELETE FROM stock WHERE slot_no = ?", gone)
            conn.executemany("DELETE FROM planogram_slot WHERE slot_no = ?", gone)
            # free every (board, address) first, so slots may swap hardware positions
            conn.execute("UPDATE planogram_slot SET board = -slot_no, address = -1")
            for s in planogram:
                conn.execute(
                    "INSERT INTO planogram_slot "
                    "(slot_no, board, address, kind, capacity, product_id, row, col) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (slot_no) DO UPDATE SET "
                    "board = excluded.board, address = excluded.address, kind = excluded.kind, "
                    "capacity = excluded.capacity, product_id = excluded.product_id, "
                    "row = excluded.row, col = excluded.col",
                    (
                        s.slot_no,
                        s.board,
                        s.address,
                        s.kind.value,
                        s.capacity,
                        s.product_id,
                        s.row,
                        s.col,
                    ),
                )
                conn.execute(
                    "INSERT INTO stock (slot_no, level) VALUES (?, 0) "
                    "ON CONFLICT (slot_no) DO NOTHING",
                    (s.slot_no,),
                )
            _set_meta(conn, "planogram_meta", planogram.version, now)


@dataclass(frozen=True, slots=True)
class StockLogEntry:
    id: int
    slot_no: int
    delta: int
    level_after: int
    reason: StockReason
    ref: str
    at: float


class StockRepo:
    """Fill levels per slot. Every change is written with its log row, in one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _level_capacity(self, conn: sqlite3.Connection, slot_no: int) -> tuple[int, int]:
        row = conn.execute(
            "SELECT s.level, p.capacity FROM stock s JOIN planogram_slot p USING (slot_no) "
            "WHERE slot_no = ?",
            (slot_no,),
        ).fetchone()
        if row is None:
            raise StockError(f"slot {slot_no} is not in the planogram")
        return int(row[0]), int(row[1])

    def level(self, slot_no: int) -> int:
        """The slot's level; StockError if the slot is not in the planogram."""
        with self._db.read() as conn:
            return self._level_capacity(conn, slot_no)[0]

    def levels(self) -> dict[int, int]:
        with self._db.read() as conn:
            rows = conn.execute("SELECT slot_no, level FROM stock ORDER BY slot_no").fetchall()
        return {int(n): int(lv) for n, lv in rows}

    def apply(self, change: StockChange) -> int:
        """Apply `change` and log it; return the new level. Invalid: StockError, nothing written."""
        if not isinstance(change.reason, StockReason):
            raise StockError(f"slot {change.slot_no}: unknown reason {change.reason!r}")
        with self._db.transaction() as conn:
            level, capacity = self._level_capacity(conn, change.slot_no)
            new = apply_change(level, capacity, change)
            conn.execute("UPDATE stock SET level = ? WHERE slot_no = ?", (new, change.slot_no))
            conn.execute(
                "INSERT INTO stock_log (slot_no, delta, level_after, reason, ref, at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    change.slot_no,
                    change.delta,
                    new,
                    change.reason.value,
                    change.ref,
                    self._db.clock.time(),
                ),
            )
        return new

    def fill_to_capacity(self, slot_no: int, ref: str = "") -> int:
        """Restock the slot to its capacity; return the new level (no change, no log row)."""
        with self._db.transaction() as conn:
            level, capacity = self._level_capacity(conn, slot_no)
            if level >= capacity:
                return level
            return self.apply(StockChange(slot_no, capacity - level, StockReason.RESTOCK, ref))

    def set_count(self, slot_no: int, count: int, ref: str = "") -> int:
        """A technician counted `count` items: log a COUNT_CORRECTION (even of 0) to that level."""
        with self._db.transaction() as conn:
            level, _ = self._level_capacity(conn, slot_no)
            return self.apply(
                StockChange(slot_no, count - level, StockReason.COUNT_CORRECTION, ref)
            )

    def log(self, slot_no: int | None = None, limit: int = 100) -> list[StockLogEntry]:
        """The latest log rows, newest first, for one slot or all."""
        sql = "SELECT id, slot_no, delta, level_after, reason, ref, at FROM stock_log"
        args: tuple[int, ...] = ()
        if slot_no is not None:
            sql += " WHERE slot_no = ?"
            args = (slot_no,)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._db.read() as conn:
            rows = conn.execute(sql, (*args, limit)).fetchall()
        return [
            StockLogEntry(
                id=int(r[0]),
                slot_no=int(r[1]),
                delta=int(r[2]),
                level_after=int(r[3]),
                reason=StockReason(r[4]),
                ref=str(r[5]),
                at=float(r[6]),
            )
            for r in rows
        ]


class SettingsRepo:
    """Small key/value settings (text; JSON helpers for structured values)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, key: str, default: str | None = None) -> str | None:
        with self._db.read() as conn:
            row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return default if row is None else str(row[0])

    def set(self, key: str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"setting {key!r}: value must be str, got {type(value).__name__}")
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def delete(self, key: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM settings WHERE key = ?", (key,))

    def get_json(self, key: str, default: object = None) -> object:
        text = self.get(key)
        if text is None:
            return default
        try:
            return json.loads(text)
        except ValueError as e:
            raise StoreError(f"setting {key!r} is not valid JSON: {e}") from e

    def set_json(self, key: str, value: object) -> None:
        self.set(key, json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False))


class CounterRepo:
    """Named monotonic counters. `next_value` is committed before it returns: never reused."""

    BOOT = "boot"

    def __init__(self, db: Database) -> None:
        self._db = db

    def next_value(self, name: str) -> int:
        """The counter's next value (1 for a new counter), durably committed."""
        with self._db.transaction() as conn:
            rows = conn.execute(
                "INSERT INTO counters (name, value) VALUES (?, 1) "
                "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
                (name,),
            ).fetchall()  # fetch all: a half-read RETURNING statement would block COMMIT
        return int(rows[0][0])

    def current(self, name: str) -> int:
        """The last value handed out, 0 if none."""
        with self._db.read() as conn:
            row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])
