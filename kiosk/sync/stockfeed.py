"""The stock feed: every row of the store's stock log becomes one `events/stock` outbox record.

Owns: the high-water mark (settings `stock_feed.last_id`: the last stock_log id copied) and the
copy itself: new rows (id > mark) go into the outbox in ONE transaction with the mark's update,
so a row is copied exactly once (a crash before the commit copies it again, after it never;
the event id `stock-<kiosk>-<epoch>-<log id>` is deterministic anyway, so the province drops a
duplicate). One feed for every writer of the stock log: the controller's sales and test vends,
the technician's restock, `kiosk planogram import` / `kiosk store seed-demo` / `kiosk store
recover` run from a shell while the kiosk runs or not (their rows are copied by the running
kiosk within a tick, or at its next start). The controller calls `pump(conn)` inside a sale
step's transaction (the record commits with the stock change) and `pump()` on every tick.
Never changes stock, never publishes (the outbox's sync client does).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from kiosk.store import Store
from kiosk.sync.outbox import Priority
from kiosk.sync.records import RecordSink, stock_body, stock_event_id

__all__ = ["MARK", "StockFeed"]

MARK = "stock_feed.last_id"  # settings key: the last stock_log id copied into the outbox
BATCH = 200  # rows per transaction (a long backlog, e.g. a first start, goes in batches)


class StockFeed:
    """See the module docstring. Not thread-safe by itself; the store's lock serialises it."""

    def __init__(self, store: Store, sink: RecordSink, kiosk_id: str) -> None:
        self.store = store
        self.sink = sink
        self.kiosk_id = kiosk_id

    def pending(self) -> bool:
        """Are there stock_log rows not yet copied? (one cheap read)"""
        with self.store.read() as c:
            return self._rows(c, 1) != []

    def pump(self, conn: sqlite3.Connection | None = None, limit: int = BATCH) -> int:
        """Copy up to `limit` new stock_log rows into the outbox with the mark, in one
        transaction (a savepoint of the caller's when `conn` is given: a failure rolls back
        only the copy). Returns how many were copied. Raises what the outbox raises."""
        with self.store.transaction() as c:
            if conn is not None and c is not conn:
                raise ValueError("conn is not this store's connection")
            rows = self._rows(c, limit)
            if not rows:
                return 0
            epoch = self.store.epoch
            for log_id, slot_no, delta, level, reason, ref, at, product, order_id in rows:
                body = stock_body(
                    slot_no=int(slot_no),
                    product_id=str(product or ""),
                    delta=int(delta),
                    level=int(level),
                    reason=str(reason),
                    ref=str(order_id) if order_id is not None else str(ref),
                    at=float(at),
                )
                self.sink.append(
                    "stock",
                    body,
                    Priority.HIGH,
                    event_id=stock_event_id(self.kiosk_id, epoch, int(log_id)),
                    conn=c,
                )
            c.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (MARK, str(int(rows[-1][0]))),
            )
        return len(rows)

    def _rows(self, c: sqlite3.Connection, limit: int) -> list[tuple[Any, ...]]:
        """New rows with the slot's product now and, for a sale (ref = the vend's tx), the id of
        the order whose tx it was (tx >> 8 is the order's sequence number)."""
        row = c.execute("SELECT value FROM settings WHERE key = ?", (MARK,)).fetchone()
        mark = int(row[0]) if row is not None else 0
        return c.execute(
            "SELECT l.id, l.slot_no, l.delta, l.level_after, l.reason, l.ref, l.at, "
            "p.product_id, o.order_id FROM stock_log l "
            "LEFT JOIN planogram_slot p ON p.slot_no = l.slot_no "
            "LEFT JOIN orders o ON l.reason = 'sale' AND l.ref GLOB '[0-9]*' "
            "AND o.seq = (CAST(l.ref AS INTEGER) >> 8) "
            "WHERE l.id > ? ORDER BY l.id LIMIT ?",
            (mark, limit),
        ).fetchall()
