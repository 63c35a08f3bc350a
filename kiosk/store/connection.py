"""One SQLite connection shared by the kiosk's threads, and its transactions.

Owns: the connection, the lock that serialises its use, and the transaction discipline
(`BEGIN IMMEDIATE` for writes, nested blocks as savepoints). Must never decide what is stored:
that belongs to the repositories. Must never leave a transaction open after a block exits.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from kiosk.clock import Clock
from kiosk.store.errors import StoreClosed

__all__ = ["Database"]


class Database:
    """A connection opened with `isolation_level=None` (we issue BEGIN/COMMIT ourselves).

    Every use holds `self.lock` (re-entrant), so the controller, sync and UI threads can share it.
    A `transaction()` inside another one becomes a SAVEPOINT: its failure rolls back only its own
    writes and propagates; the outer block decides whether to go on.
    """

    def __init__(self, conn: sqlite3.Connection, clock: Clock) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.clock = clock
        self.lock = threading.RLock()
        self._depth = 0  # only touched by the thread holding the lock

    @property
    def closed(self) -> bool:
        return self._conn is None

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosed("the store is closed")
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: all of the block's writes are durable on exit, or none are."""
        with self.lock:
            conn = self._live()
            depth = self._depth
            rollback: tuple[str, ...]
            if depth == 0:
                begin, commit, rollback = "BEGIN IMMEDIATE", "COMMIT", ("ROLLBACK",)
            else:
                name = f"sp{depth}"
                begin, commit = f"SAVEPOINT {name}", f"RELEASE {name}"
                rollback = (f"ROLLBACK TO {name}", f"RELEASE {name}")
            conn.execute(begin)
            self._depth += 1
            try:
                yield conn
                self._depth -= 1
                conn.execute(commit)
            except BaseException:
                if self._depth > depth:  # the block failed, not the commit
                    self._depth -= 1
                # SQLite may already have rolled back by itself (e.g. disk full)
                if conn.in_transaction:
                    for stmt in rollback:
                        conn.execute(stmt)
                raise

    def change_token(self) -> tuple[int, int, int]:
        """Changes when anything may have changed in the database since the last call: another
        connection committed (SQLite's `data_version`) or this one wrote (`total_changes`,
        rolled-back writes included), or the connection is another one. Equal tokens: nothing
        was written in between, so a value read after the first is still current. No
        transaction, no table read (a poll of an idle store costs one pragma)."""
        with self.lock:
            conn = self._live()
            row = conn.execute("PRAGMA data_version").fetchone()
            return (id(conn), int(row[0]), conn.total_changes)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several reads (a deferred transaction, or the outer one)."""
        with self.lock:
            conn = self._live()
            if self._depth > 0:
                yield conn
                return
            conn.execute("BEGIN")
            self._depth += 1
            try:
                yield conn
            finally:
                self._depth -= 1
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def checkpoint(self) -> tuple[int, int]:
        """Copy the WAL into the database and truncate it to zero bytes (only when no
        transaction is open on this connection). Returns (busy, frames left)."""
        with self.lock:
            conn = self._live()
            if self._depth > 0 or conn.in_transaction:
                return (1, -1)
            busy, _log, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            return int(busy), int(done)

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
