"""Schema migrations: the ordered list of schema versions and the runner that applies them.

Owns: the database schema (every table exists because a migration here created it) and the
`schema_version` table. Must never edit a released migration (add a new one instead), never
skip a version, and never touch a database whose version is newer than the code knows.
Version 0 is an empty database: it has no `schema_version` table yet.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kiosk.clock import Clock, SystemClock
from kiosk.core.payment import store_epoch_from_int
from kiosk.store.errors import SchemaTooNew, StoreError

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration", "current_version", "migrate"]


@dataclass(frozen=True, slots=True)
class Migration:
    """Brings the schema from `version - 1` to `version`.

    `apply` is SQL (one or more statements) or a callable given the connection inside the
    migration's transaction; it must not commit.
    """

    version: int
    description: str
    apply: str | Callable[[sqlite3.Connection], None]


_V1 = """
CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE catalog_meta (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    version    INTEGER NOT NULL CHECK (version >= 0),
    applied_at REAL NOT NULL
);

CREATE TABLE catalog_product (
    product_id       TEXT PRIMARY KEY NOT NULL,
    name_zh          TEXT NOT NULL,
    name_en          TEXT NOT NULL,
    certification_no TEXT NOT NULL,
    origin_county_zh TEXT NOT NULL,
    origin_county_en TEXT NOT NULL,
    origin_area_code TEXT NOT NULL,
    producer_zh      TEXT NOT NULL,
    producer_en      TEXT NOT NULL,
    category         TEXT NOT NULL,
    price_fen        INTEGER NOT NULL CHECK (typeof(price_fen) = 'integer' AND price_fen > 0),
    spec_zh          TEXT NOT NULL,
    spec_en          TEXT NOT NULL,
    shelf_life_days  INTEGER NOT NULL CHECK (shelf_life_days > 0),
    image_ref        TEXT NOT NULL DEFAULT ''
);

CREATE TABLE planogram_meta (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    version    INTEGER NOT NULL CHECK (version >= 0),
    applied_at REAL NOT NULL
);

CREATE TABLE planogram_slot (
    slot_no    INTEGER PRIMARY KEY,
    board      INTEGER NOT NULL,
    address    INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    capacity   INTEGER NOT NULL CHECK (capacity > 0),
    product_id TEXT,
    row        INTEGER NOT NULL DEFAULT 0,
    col        INTEGER NOT NULL DEFAULT 0,
    UNIQUE (board, address)
);

CREATE TABLE stock (
    slot_no INTEGER PRIMARY KEY REFERENCES planogram_slot (slot_no),
    level   INTEGER NOT NULL CHECK (typeof(level) = 'integer' AND level >= 0)
);

-- reason is checked by code (kiosk.core.stock.StockReason), so new reasons need no rebuild.
CREATE TABLE stock_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    slot_no     INTEGER NOT NULL,
    delta       INTEGER NOT NULL,
    level_after INTEGER NOT NULL CHECK (level_after >= 0),
    reason      TEXT NOT NULL,
    ref         TEXT NOT NULL DEFAULT '',
    at          REAL NOT NULL
);

CREATE INDEX stock_log_slot ON stock_log (slot_no, id);
"""

_V2 = """
-- Monotonic counters (boot number, transaction ids, order sequence). A value handed out is
-- committed before it is used, so it is never handed out twice, even across power loss.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL CHECK (typeof(value) = 'integer' AND value >= 0)
) WITHOUT ROWID;
"""

_V3 = """
-- The sync outbox: records waiting for the province's end-to-end acknowledgement.
-- seq comes from counters('outbox_seq') in the same transaction: never reused, even after the
-- newest record was acknowledged and deleted. priority: 0 critical, 1 high, 2 normal, 3 low.
CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY CHECK (typeof(seq) = 'integer' AND seq > 0),
    event_id     TEXT NOT NULL UNIQUE,
    kind         TEXT NOT NULL,
    topic        TEXT NOT NULL,
    priority     INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 3),
    payload      BLOB NOT NULL,
    created_at   REAL NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_sent_at REAL
);

CREATE INDEX outbox_due ON outbox (priority, seq);
CREATE INDEX outbox_kind ON outbox (kind, priority, seq);

-- Depth, bytes and drop counts per priority, kept exact by triggers (the disk budget reads it).
CREATE TABLE outbox_stats (
    priority INTEGER PRIMARY KEY CHECK (priority BETWEEN 0 AND 3),
    depth    INTEGER NOT NULL DEFAULT 0,
    bytes    INTEGER NOT NULL DEFAULT 0,
    dropped  INTEGER NOT NULL DEFAULT 0
);

INSERT INTO outbox_stats (priority) VALUES (0), (1), (2), (3);

CREATE TRIGGER outbox_stats_insert AFTER INSERT ON outbox BEGIN
    UPDATE outbox_stats SET depth = depth + 1,
        bytes = bytes + length(NEW.payload) + length(NEW.topic) + length(NEW.event_id) + 64
    WHERE priority = NEW.priority;
END;

CREATE TRIGGER outbox_stats_delete AFTER DELETE ON outbox BEGIN
    UPDATE outbox_stats SET depth = depth - 1,
        bytes = bytes - length(OLD.payload) - length(OLD.topic) - length(OLD.event_id) - 64
    WHERE priority = OLD.priority;
END;

-- Versions of signed province state applied on this kiosk (catalog, planogram, prices, ...).
CREATE TABLE sync_applied (
    name       TEXT PRIMARY KEY NOT NULL,
    version    INTEGER NOT NULL CHECK (typeof(version) = 'integer' AND version >= 0),
    applied_at REAL NOT NULL,
    kid        TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;

-- Nonces of accepted commands, kept until well after they expire (replay protection).
CREATE TABLE sync_nonce (
    nonce      TEXT PRIMARY KEY NOT NULL,
    expires_at REAL NOT NULL,
    seen_at    REAL NOT NULL
) WITHOUT ROWID;

CREATE INDEX sync_nonce_expiry ON sync_nonce (expires_at);
"""

_V4 = """
-- Sales (kiosk.store.orders): one row per order (body = the full core Order as JSON), the stock
-- it holds back while open, the hash-chained sale ledger, refunds due and technician alarms.
CREATE TABLE orders (
    order_id   TEXT PRIMARY KEY NOT NULL,
    seq        INTEGER NOT NULL UNIQUE CHECK (typeof(seq) = 'integer' AND seq > 0),
    state      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);

CREATE INDEX orders_state ON orders (state);

CREATE TABLE reservations (
    order_id TEXT NOT NULL REFERENCES orders (order_id),
    slot_no  INTEGER NOT NULL,
    units    INTEGER NOT NULL CHECK (typeof(units) = 'integer' AND units > 0),
    PRIMARY KEY (order_id, slot_no)
) WITHOUT ROWID;

-- seq runs 1, 2, 3, ... without gaps; prev_hash / hash repeat what the body carries.
CREATE TABLE ledger (
    seq        INTEGER PRIMARY KEY CHECK (typeof(seq) = 'integer' AND seq > 0),
    order_id   TEXT NOT NULL UNIQUE,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE,
    body       TEXT NOT NULL,
    created_at REAL NOT NULL
);

-- key_ref is the provider reference for double payments and '' otherwise: one refund per
-- (order, reason), one per extra payment.
CREATE TABLE refunds (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id     TEXT NOT NULL,
    reason       TEXT NOT NULL,
    key_ref      TEXT NOT NULL,
    provider_ref TEXT NOT NULL,
    amount_fen   INTEGER NOT NULL CHECK (typeof(amount_fen) = 'integer' AND amount_fen > 0),
    created_at   REAL NOT NULL,
    UNIQUE (order_id, reason, key_ref)
);

CREATE TABLE alarms (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    kind     TEXT NOT NULL,
    order_id TEXT NOT NULL DEFAULT '',
    slot_no  INTEGER,
    detail   TEXT NOT NULL,
    at       REAL NOT NULL
);

-- Technician test vends (outside orders; tx from counters('test_vend_tx') | 0xFF000000).
CREATE TABLE test_vends (
    tx         INTEGER PRIMARY KEY,
    slot_no    INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    outcome    TEXT NOT NULL DEFAULT '',
    started_at REAL NOT NULL,
    ended_at   REAL
);

CREATE INDEX stock_log_ref ON stock_log (ref);
"""

#: Counters that name things outside the store (order ids and vend tx ids the board remembers):
#: a new store starts them at a random offset below this, so two stores of one kiosk (one
#: rebuilt after corruption and nothing could be read back) are very unlikely to overlap even
#: before `kiosk store recover` re-bases them (docs/sales.md, "Store epoch").
RANDOM_COUNTER_BASE = 1 << 22
RANDOMIZED_COUNTERS = ("order_seq", "test_vend_tx")


def _v5(conn: sqlite3.Connection) -> None:
    """The store's identity: a random epoch that is part of every order id made in this store,
    and random starting points for the counters that name things outside the store."""
    conn.execute(
        "CREATE TABLE store_identity ("
        " id INTEGER PRIMARY KEY CHECK (id = 1),"
        " epoch TEXT NOT NULL,"
        " created_at REAL NOT NULL,"
        " origin TEXT NOT NULL,"  # new / upgraded / recovered
        " detail TEXT NOT NULL DEFAULT '')"
    )
    has_orders = conn.execute("SELECT 1 FROM orders LIMIT 1").fetchone() is not None
    conn.execute(
        "INSERT INTO store_identity (id, epoch, created_at, origin) "
        "VALUES (1, ?, CAST(strftime('%s', 'now') AS REAL), ?)",
        (store_epoch_from_int(secrets.randbelow(1 << 20)), "upgraded" if has_orders else "new"),
    )
    for name in RANDOMIZED_COUNTERS:
        conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (name, secrets.randbelow(RANDOM_COUNTER_BASE)),
        )


_V6 = """
ALTER TABLE catalog_product ADD COLUMN chilled_max_c REAL
    CHECK (chilled_max_c IS NULL OR chilled_max_c BETWEEN -30 AND 30);
"""


MIGRATIONS: list[Migration] = [
    Migration(1, "settings, catalog, planogram, stock and stock log", _V1),
    Migration(2, "monotonic counters (boot number, transaction and order sequences)", _V2),
    Migration(3, "sync: outbox with per-priority stats, applied versions, command nonces", _V3),
    Migration(4, "sales: orders, reservations, ledger, refunds, alarms, test vends", _V4),
    Migration(5, "store identity: epoch in order ids, random counter bases", _v5),
    Migration(6, "chilled goods: catalog_product.chilled_max_c", _V6),
]

LATEST_VERSION = MIGRATIONS[-1].version

_SCHEMA_VERSION_DDL = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    applied_at  REAL NOT NULL,
    description TEXT NOT NULL
)
"""


def _statements(sql: str) -> list[str]:
    """Split a script into statements (executescript would commit our transaction)."""
    out: list[str] = []
    pending = ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                stmt = pending.strip()
                # drop leading comment-only lines so that an empty statement is not run
                if any(
                    line.strip() and not line.strip().startswith("--") for line in stmt.splitlines()
                ):
                    out.append(stmt)
            pending = ""
    if pending.strip(" \t\r\n;"):
        raise StoreError(f"incomplete SQL statement in migration: {pending.strip()[:80]!r}")
    return out


def current_version(conn: sqlite3.Connection) -> int:
    """The schema version of the database, 0 when it has none."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if row is None:
        return 0
    (version,) = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
    return int(version)


def _check_list(migrations: Sequence[Migration]) -> None:
    for expected, m in enumerate(migrations, start=1):
        if m.version != expected:
            raise StoreError(f"migration list out of order: #{expected} has version {m.version}")


def migrate(
    conn: sqlite3.Connection,
    target: int | None = None,
    *,
    migrations: Sequence[Migration] = MIGRATIONS,
    clock: Clock | None = None,
) -> int:
    """Apply every missing migration up to `target` (default: the latest), each in its own
    transaction, and return the resulting version.

    `conn` must be in autocommit mode (`isolation_level=None`) with no transaction open.
    Raises SchemaTooNew, without writing, if the database is newer than `migrations` know.
    """
    _check_list(migrations)
    latest = len(migrations)
    if target is None:
        target = latest
    if not 0 <= target <= latest:
        raise StoreError(f"no migration to version {target} (known: 0..{latest})")
    if conn.in_transaction:
        raise StoreError("migrate() needs a connection with no transaction open")
    now = (clock or SystemClock()).time
    version = current_version(conn)
    if version > latest:
        raise SchemaTooNew(
            f"database schema version {version} is newer than this software knows "
            f"({latest}); install the newer software or restore a matching backup"
        )
    if version > target:
        raise StoreError(f"database is at version {version}; downgrading to {target} is not done")
    for m in migrations[version:target]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # re-read under the write lock: another process may have migrated meanwhile
            if current_version(conn) >= m.version:
                conn.execute("COMMIT")
                continue
            conn.execute(_SCHEMA_VERSION_DDL)
            if isinstance(m.apply, str):
                for stmt in _statements(m.apply):
                    conn.execute(stmt)
            else:
                m.apply(conn)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at, description) VALUES (?, ?, ?)",
                (m.version, now(), m.description),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return current_version(conn)
