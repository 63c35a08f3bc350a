"""Sales persistence: orders, reservations, the hash-chained ledger, refunds due, alarms.

Owns: the tables of migration v4 (`orders`, `reservations`, `ledger`, `refunds`, `alarms`,
`test_vends`) and the JSON form of a core `Order` (`order_to_dict` / `order_from_dict`, exact
round trip). Every write method takes the connection of an open `store.transaction()`, so the
controller commits an order step, its stock change, ledger record, refund and outbox records
together. Idempotent where a restart may repeat a write (ledger by order id, refunds by
(order, reason[, provider ref]), stock sales by tx).
Never decides what happens to an order (that is `kiosk.core.sale`) and never commits by itself.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kiosk.core.ledger import (
    GENESIS_HASH,
    ChainProblem,
    SaleRecord,
    make_record,
    record_from_dict,
    record_to_dict,
    verify_chain,
)
from kiosk.core.payment import Payment, PaymentMethod
from kiosk.core.planogram import SlotKind
from kiosk.core.sale import (
    FINAL_STATES,
    CancelReason,
    Line,
    LineStatus,
    Order,
    RefundReason,
    SaleRules,
    State,
    VendOutcome,
)
from kiosk.core.stock import StockChange, StockError, StockReason
from kiosk.store.db import Store

__all__ = [
    "ORDER_BODY_SCHEMA",
    "AlarmRow",
    "OrderRepo",
    "RefundRow",
    "order_from_dict",
    "order_to_dict",
]

ORDER_BODY_SCHEMA = 1
OPEN_STATES = tuple(s.value for s in State if s not in FINAL_STATES)


# --- Order <-> JSON -------------------------------------------------------------------------


def _payment_to_dict(p: Payment) -> dict[str, Any]:
    return {
        "method": p.method.value,
        "provider_ref": p.provider_ref,
        "amount_fen": p.amount_fen,
        "confirmed_at": p.confirmed_at,
    }


def _payment_from_dict(d: Mapping[str, Any]) -> Payment:
    return Payment(
        PaymentMethod(d["method"]),
        str(d["provider_ref"]),
        int(d["amount_fen"]),
        float(d["confirmed_at"]),
    )


def _line_to_dict(ln: Line) -> dict[str, Any]:
    return {
        "product_id": ln.product_id,
        "name_zh": ln.name_zh,
        "name_en": ln.name_en,
        "certification_no": ln.certification_no,
        "origin_county_zh": ln.origin_county_zh,
        "origin_county_en": ln.origin_county_en,
        "origin_area_code": ln.origin_area_code,
        "price_fen": ln.price_fen,
        "slot_no": ln.slot_no,
        "slot_kind": ln.slot_kind.value,
        "status": ln.status.value,
        "tx": ln.tx,
        "attempts": ln.attempts,
        "tried_slots": list(ln.tried_slots),
        "outcome": None if ln.outcome is None else ln.outcome.value,
    }


def _line_from_dict(d: Mapping[str, Any]) -> Line:
    return Line(
        product_id=str(d["product_id"]),
        name_zh=str(d["name_zh"]),
        name_en=str(d["name_en"]),
        certification_no=str(d["certification_no"]),
        origin_county_zh=str(d["origin_county_zh"]),
        origin_county_en=str(d["origin_county_en"]),
        origin_area_code=str(d["origin_area_code"]),
        price_fen=int(d["price_fen"]),
        slot_no=int(d["slot_no"]),
        slot_kind=SlotKind(d["slot_kind"]),
        status=LineStatus(d["status"]),
        tx=None if d["tx"] is None else int(d["tx"]),
        attempts=int(d["attempts"]),
        tried_slots=tuple(int(s) for s in d["tried_slots"]),
        outcome=None if d["outcome"] is None else VendOutcome(d["outcome"]),
    )


_RULE_FIELDS = (
    ("payment_window_s", float),
    ("extension_s", float),
    ("extend_offer_before_s", float),
    ("max_extensions", int),
    ("payment_query_after_s", float),
    ("payment_query_every_s", float),
    ("vend_timeout_s", float),
    ("outcome_query_every_s", float),
    ("offline_give_up_s", float),
    ("max_code_tries", int),
)
_OPT_FLOATS = (
    "last_payment_query_at",
    "vend_started_at",
    "last_outcome_query_at",
    "suspended_at",
    "finished_at",
)


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def order_to_dict(o: Order) -> dict[str, Any]:
    """The stored (JSON) form of an order: every field, enums by value, tuples as lists."""
    return {
        "schema": ORDER_BODY_SCHEMA,
        "order_id": o.order_id,
        "kiosk_id": o.kiosk_id,
        "order_seq": o.order_seq,
        "lines": [_line_to_dict(ln) for ln in o.lines],
        "rules": {name: getattr(o.rules, name) for name, _ in _RULE_FIELDS},
        "state": o.state.value,
        "created_at": o.created_at,
        "expires_at": o.expires_at,
        "extensions": o.extensions,
        "extend_offered": o.extend_offered,
        "code_tries": o.code_tries,
        "payment": None if o.payment is None else _payment_to_dict(o.payment),
        "cancel_reason": None if o.cancel_reason is None else o.cancel_reason.value,
        "refund_due_fen": o.refund_due_fen,
        "refund_reason": None if o.refund_reason is None else o.refund_reason.value,
        "extra_payments": [_payment_to_dict(p) for p in o.extra_payments],
        **{name: getattr(o, name) for name in _OPT_FLOATS},
    }


def order_from_dict(d: Mapping[str, Any]) -> Order:
    """Inverse of `order_to_dict`; raises ValueError on anything else."""
    try:
        if d["schema"] != ORDER_BODY_SCHEMA:
            raise ValueError(f"unknown order body schema {d['schema']!r}")
        raw_rules: dict[str, Any] = {name: typ(d["rules"][name]) for name, typ in _RULE_FIELDS}
        rules = SaleRules(**raw_rules)
        return Order(
            order_id=str(d["order_id"]),
            kiosk_id=str(d["kiosk_id"]),
            order_seq=int(d["order_seq"]),
            lines=tuple(_line_from_dict(ln) for ln in d["lines"]),
            rules=rules,
            state=State(d["state"]),
            created_at=float(d["created_at"]),
            expires_at=float(d["expires_at"]),
            extensions=int(d["extensions"]),
            extend_offered=bool(d["extend_offered"]),
            code_tries=int(d["code_tries"]),
            payment=None if d["payment"] is None else _payment_from_dict(d["payment"]),
            cancel_reason=None if d["cancel_reason"] is None else CancelReason(d["cancel_reason"]),
            refund_due_fen=int(d["refund_due_fen"]),
            refund_reason=None if d["refund_reason"] is None else RefundReason(d["refund_reason"]),
            extra_payments=tuple(_payment_from_dict(p) for p in d["extra_payments"]),
            **{name: _opt_float(d[name]) for name in _OPT_FLOATS},
        )
    except (KeyError, TypeError) as e:
        raise ValueError(f"not an order body: {type(e).__name__}: {e}") from e


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


# --- rows -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefundRow:
    order_id: str
    reason: str
    provider_ref: str
    amount_fen: int
    created_at: float


@dataclass(frozen=True, slots=True)
class AlarmRow:
    id: int
    kind: str
    order_id: str
    slot_no: int | None
    detail: str
    at: float


# --- the repository -------------------------------------------------------------------------


class OrderRepo:
    """Reads go through `store.read()`; writes take the `conn` of the caller's transaction."""

    ORDER_SEQ = "order_seq"
    TEST_VEND_SEQ = "test_vend_tx"

    def __init__(self, store: Store) -> None:
        self.store = store

    # orders

    def next_order_seq(self, conn: sqlite3.Connection) -> int:
        rows = conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, 1) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
            (self.ORDER_SEQ,),
        ).fetchall()
        return int(rows[0][0])

    def save(self, conn: sqlite3.Connection, order: Order, now: float) -> None:
        """Insert or update the order row (the whole body)."""
        conn.execute(
            "INSERT INTO orders (order_id, seq, state, body, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO UPDATE SET "
            "state = excluded.state, body = excluded.body, updated_at = excluded.updated_at",
            (
                order.order_id,
                order.order_seq,
                order.state.value,
                _dumps(order_to_dict(order)),
                now,
                now,
            ),
        )

    def get(self, order_id: str) -> Order | None:
        with self.store.read() as c:
            row = c.execute("SELECT body FROM orders WHERE order_id = ?", (order_id,)).fetchone()
        return None if row is None else order_from_dict(json.loads(row[0]))

    def unfinished(self) -> list[Order]:
        """Orders not in a closed state, oldest first (what recovery resumes)."""
        marks = ",".join("?" * len(OPEN_STATES))
        with self.store.read() as c:
            rows = c.execute(
                f"SELECT body FROM orders WHERE state IN ({marks}) ORDER BY seq", OPEN_STATES
            ).fetchall()
        return [order_from_dict(json.loads(r[0])) for r in rows]

    def all(self) -> list[Order]:
        with self.store.read() as c:
            rows = c.execute("SELECT body FROM orders ORDER BY seq").fetchall()
        return [order_from_dict(json.loads(r[0])) for r in rows]

    # reservations

    def reserve(self, conn: sqlite3.Connection, order_id: str, taken: Mapping[int, int]) -> None:
        for slot_no, units in taken.items():
            if units > 0:
                conn.execute(
                    "INSERT INTO reservations (order_id, slot_no, units) VALUES (?, ?, ?) "
                    "ON CONFLICT (order_id, slot_no) DO UPDATE SET units = units + excluded.units",
                    (order_id, slot_no, units),
                )

    def unreserve_one(self, conn: sqlite3.Connection, order_id: str, slots: list[int]) -> None:
        """One unit left the cabinet: drop one reserved unit, from the first of `slots` held."""
        for slot_no in slots:
            cur = conn.execute(
                "UPDATE reservations SET units = units - 1 "
                "WHERE order_id = ? AND slot_no = ? AND units > 1",
                (order_id, slot_no),
            )
            if cur.rowcount:
                return
            cur = conn.execute(
                "DELETE FROM reservations WHERE order_id = ? AND slot_no = ? AND units = 1",
                (order_id, slot_no),
            )
            if cur.rowcount:
                return

    def release(self, conn: sqlite3.Connection, order_id: str) -> None:
        conn.execute("DELETE FROM reservations WHERE order_id = ?", (order_id,))

    def reserved(self, conn: sqlite3.Connection | None = None) -> dict[int, int]:
        """slot_no -> units held back by open orders."""
        sql = "SELECT slot_no, SUM(units) FROM reservations GROUP BY slot_no"
        if conn is not None:
            rows = conn.execute(sql).fetchall()
        else:
            with self.store.read() as c:
                rows = c.execute(sql).fetchall()
        return {int(s): int(u) for s, u in rows}

    # stock

    def stock_sale(
        self, conn: sqlite3.Connection, slot_no: int, tx: int, now: float
    ) -> int | StockError | None:
        """StockChange(slot, -1, SALE, ref=tx) once per tx: the new level, None when this tx
        was already applied, or the StockError (nothing written; the caller alarms)."""
        ref = str(tx)
        seen = conn.execute(
            "SELECT 1 FROM stock_log WHERE ref = ? AND reason = ?",
            (ref, StockReason.SALE.value),
        ).fetchone()
        if seen is not None:
            return None
        try:
            return self.store.stock.apply(StockChange(slot_no, -1, StockReason.SALE, ref))
        except StockError as e:
            return e

    # ledger

    def append_ledger(self, conn: sqlite3.Connection, order: Order, now: float) -> SaleRecord:
        """The order's sale record (idempotent by order id): the existing one, or a new one
        chained to the last record."""
        row = conn.execute("SELECT body FROM ledger WHERE order_id = ?", (order.order_id,))
        found = row.fetchone()
        if found is not None:
            return record_from_dict(json.loads(found[0]))
        last = conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (1, GENESIS_HASH) if last is None else (int(last[0]) + 1, str(last[1]))
        rec = make_record(order, seq, prev)
        conn.execute(
            "INSERT INTO ledger (seq, order_id, prev_hash, hash, body, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (seq, order.order_id, prev, rec.record_hash, _dumps(record_to_dict(rec)), now),
        )
        return rec

    def ledger(self) -> list[SaleRecord]:
        with self.store.read() as c:
            rows = c.execute("SELECT body FROM ledger ORDER BY seq").fetchall()
        return [record_from_dict(json.loads(r[0])) for r in rows]

    def verify_ledger(self) -> list[ChainProblem | str]:
        """Chain problems of the whole ledger, plus rows whose columns disagree with the body."""
        problems: list[ChainProblem | str] = []
        records: list[SaleRecord] = []
        with self.store.read() as c:
            rows = c.execute(
                "SELECT seq, order_id, prev_hash, hash, body FROM ledger ORDER BY seq"
            ).fetchall()
        for seq, order_id, prev, h, body in rows:
            try:
                rec = record_from_dict(json.loads(body))
            except ValueError as e:
                problems.append(f"seq {seq}: unreadable record: {e}")
                continue
            if (rec.seq, rec.order_id, rec.prev_hash, rec.record_hash) != (seq, order_id, prev, h):
                problems.append(f"seq {seq}: row columns do not match the record body")
            records.append(rec)
        problems.extend(verify_chain(records))
        return problems

    def integrity_problems(self, *, from_first_row: bool = False) -> list[str]:
        """The whole check (`kiosk store check`; the controller runs it in the background after
        start): every ledger record and every order. See `check_integrity`."""
        return self.check_integrity(from_first_row=from_first_row).problems

    def check_integrity(
        self,
        since: IntegrityMark | None = None,
        *,
        from_first_row: bool = False,
        chunk: int = 2000,
        pause: Callable[[], object] | None = None,
    ) -> IntegrityResult:
        """What the kiosk checks before it sells (docs/sales.md, "Start-up integrity check"):
        the ledger's hash chain and, for every paid order, the money rules: the payment equals
        the order's total, and a closed order's payments equal what was delivered plus the
        refunds recorded for it.

        `since`: only what was added or changed after that mark (the ledger from the marked
        record on, which must still be there with its hash; orders added or updated since, and
        every open order). `from_first_row`: the chain may start at its first surviving row (a
        store rebuilt by `kiosk store recover`), not at sequence 1 and genesis. Reads in chunks
        of `chunk` rows, each its own short read, so a full check never holds up a sale;
        `pause()` runs between chunks."""
        problems: list[str] = []
        mark = self._check_ledger(since, from_first_row, chunk, problems, pause)
        rowid, updated = self._check_orders(since, chunk, problems, pause)
        return IntegrityResult(problems, IntegrityMark(mark[0], mark[1], rowid, updated))

    def _check_ledger(
        self,
        since: IntegrityMark | None,
        from_first_row: bool,
        chunk: int,
        problems: list[str],
        pause: Callable[[], object] | None,
    ) -> tuple[int, str]:
        last_seq, prev = 0, GENESIS_HASH
        expected: int | None = None if from_first_row else 1
        if since is not None and since.ledger_seq > 0:
            with self.store.read() as c:
                row = c.execute(
                    "SELECT hash FROM ledger WHERE seq = ?", (since.ledger_seq,)
                ).fetchone()
            if row is None or str(row[0]) != since.ledger_hash:
                problems.append(f"ledger seq {since.ledger_seq}: changed since it was verified")
            last_seq, prev, expected = since.ledger_seq, since.ledger_hash, since.ledger_seq + 1
        while True:
            with self.store.read() as c:
                rows = c.execute(
                    "SELECT seq, order_id, prev_hash, hash, body FROM ledger WHERE seq > ? "
                    "ORDER BY seq LIMIT ?",
                    (last_seq, chunk),
                ).fetchall()
            if not rows:
                return last_seq, prev
            records = []
            for seq, order_id, prev_col, h, body in rows:
                try:
                    rec = record_from_dict(json.loads(body))
                except ValueError as e:
                    problems.append(f"ledger seq {seq}: unreadable record: {e}")
                    continue
                if (rec.seq, rec.order_id, rec.prev_hash, rec.record_hash) != (
                    seq,
                    order_id,
                    prev_col,
                    h,
                ):
                    problems.append(f"ledger seq {seq}: row columns do not match the record body")
                records.append(rec)
            if records:
                first_prev = records[0].prev_hash if expected is None else prev
                for p in verify_chain(records, first_prev_hash=first_prev, first_seq=expected):
                    problems.append(f"ledger seq {p.seq}: {p.kind.value}: {p.detail}")
                prev, expected = records[-1].record_hash, records[-1].seq + 1
            last_seq = int(rows[-1][0])
            if pause is not None:
                pause()

    def _check_orders(
        self,
        since: IntegrityMark | None,
        chunk: int,
        problems: list[str],
        pause: Callable[[], object] | None,
    ) -> tuple[int, float]:
        closed = {s.value for s in FINAL_STATES}
        with self.store.read() as c:
            refunded = dict(
                c.execute("SELECT order_id, SUM(amount_fen) FROM refunds GROUP BY order_id")
            )
            top = c.execute("SELECT MAX(rowid), MAX(updated_at) FROM orders").fetchone()
        max_rowid, max_updated = int(top[0] or 0), float(top[1] or 0.0)
        after_rowid, after_updated = (0, -1.0) if since is None else (0, since.order_updated_at)
        if since is not None:  # the changed ones only: new, updated since, or still open
            with self.store.read() as c:
                rows = c.execute(
                    "SELECT order_id, state, body FROM orders WHERE rowid > ? OR updated_at > ? "
                    f"OR state IN ({', '.join('?' for _ in OPEN_STATES)})",
                    (since.order_rowid, after_updated, *OPEN_STATES),
                ).fetchall()
            self._money(rows, closed, refunded, problems)
            return max(max_rowid, since.order_rowid), max(max_updated, since.order_updated_at)
        while True:
            with self.store.read() as c:
                rows = c.execute(
                    "SELECT rowid, order_id, state, body FROM orders WHERE rowid > ? "
                    "ORDER BY rowid LIMIT ?",
                    (after_rowid, chunk),
                ).fetchall()
            if not rows:
                return max_rowid, max_updated
            self._money([r[1:] for r in rows], closed, refunded, problems)
            after_rowid = int(rows[-1][0])
            if pause is not None:
                pause()

    @staticmethod
    def _money(
        rows: list[Any], closed: set[str], refunded: Mapping[str, int], problems: list[str]
    ) -> None:
        for order_id, state, body in rows:
            problem = _money_problem(str(order_id), str(state) in closed, body, refunded)
            if problem:
                problems.append(problem)

    # refunds

    def add_refund(
        self,
        conn: sqlite3.Connection,
        order_id: str,
        amount_fen: int,
        reason: RefundReason,
        provider_ref: str,
        now: float,
    ) -> bool:
        """Record a refund due; False when it was already recorded (idempotent)."""
        key_ref = provider_ref if reason is RefundReason.DOUBLE_PAYMENT else ""
        cur = conn.execute(
            "INSERT INTO refunds (order_id, reason, key_ref, provider_ref, amount_fen, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (order_id, reason, key_ref) DO NOTHING",
            (order_id, reason.value, key_ref, provider_ref, amount_fen, now),
        )
        return cur.rowcount > 0

    def refunds(self, order_id: str | None = None) -> list[RefundRow]:
        sql = "SELECT order_id, reason, provider_ref, amount_fen, created_at FROM refunds"
        args: tuple[str, ...] = ()
        if order_id is not None:
            sql += " WHERE order_id = ?"
            args = (order_id,)
        with self.store.read() as c:
            rows = c.execute(sql + " ORDER BY id", args).fetchall()
        return [RefundRow(str(a), str(b), str(p), int(f), float(t)) for a, b, p, f, t in rows]

    # alarms

    def add_alarm(
        self,
        conn: sqlite3.Connection,
        kind: str,
        order_id: str,
        detail: str,
        slot_no: int | None,
        now: float,
    ) -> int:
        cur = conn.execute(
            "INSERT INTO alarms (kind, order_id, slot_no, detail, at) VALUES (?, ?, ?, ?, ?)",
            (kind, order_id, slot_no, detail, now),
        )
        return int(cur.lastrowid or 0)

    def alarms(self) -> list[AlarmRow]:
        with self.store.read() as c:
            rows = c.execute(
                "SELECT id, kind, order_id, slot_no, detail, at FROM alarms ORDER BY id"
            ).fetchall()
        return [
            AlarmRow(int(i), str(k), str(o), None if s is None else int(s), str(d), float(t))
            for i, k, o, s, d, t in rows
        ]

    # technician test vends

    def start_test_vend(self, slot_no: int, kind: str, now: float) -> int:
        """Allocate a test tx (0xFF000000 | n, never an order tx) and log the start, durably."""
        with self.store.transaction() as conn:
            rows = conn.execute(
                "INSERT INTO counters (name, value) VALUES (?, 1) "
                "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
                (self.TEST_VEND_SEQ,),
            ).fetchall()
            n = int(rows[0][0])
            if n >= 1 << 24:
                raise ValueError("test vend counter exhausted")
            tx = TEST_TX_BASE | n
            conn.execute(
                "INSERT INTO test_vends (tx, slot_no, kind, started_at) VALUES (?, ?, ?, ?)",
                (tx, slot_no, kind, now),
            )
        return tx

    def finish_test_vend(self, conn: sqlite3.Connection, tx: int, outcome: str, now: float) -> None:
        conn.execute(
            "UPDATE test_vends SET outcome = ?, ended_at = ? WHERE tx = ?", (outcome, now, tx)
        )

    def test_vends(self) -> list[tuple[int, int, str, str]]:
        """(tx, slot, kind, outcome) of every test vend, oldest first."""
        with self.store.read() as c:
            rows = c.execute("SELECT tx, slot_no, kind, outcome FROM test_vends ORDER BY tx")
            return [(int(a), int(b), str(k), str(d)) for a, b, k, d in rows.fetchall()]


def _money_problem(
    order_id: str, closed: bool, body: str, refunded: Mapping[str, int]
) -> str | None:
    try:
        d = json.loads(body)
        pay = d.get("payment")
        if pay is None:
            return None
        paid = int(pay["amount_fen"])
        lines = d["lines"]
        total = sum(int(ln["price_fen"]) for ln in lines)
        delivered = sum(int(ln["price_fen"]) for ln in lines if ln["status"] == "delivered")
        extra = sum(int(p["amount_fen"]) for p in d.get("extra_payments", []))
    except (ValueError, KeyError, TypeError) as e:
        return f"order {order_id}: unreadable record: {e}"
    if paid != total:
        return f"order {order_id}: paid {paid} fen but the order totals {total} fen"
    back = int(refunded.get(order_id, 0))
    if closed and paid + extra != delivered + back:
        return (
            f"order {order_id}: paid {paid + extra} fen != delivered {delivered} fen + "
            f"refunded {back} fen"
        )
    return None


@dataclass(frozen=True, slots=True)
class IntegrityMark:
    """How far the books were verified: the ledger up to (seq, hash), orders up to a rowid and
    an updated_at (kept in settings `store.verified_through` between starts)."""

    ledger_seq: int = 0
    ledger_hash: str = GENESIS_HASH
    order_rowid: int = 0
    order_updated_at: float = 0.0

    def to_json(self) -> str:
        return json.dumps(
            {
                "ledger_seq": self.ledger_seq,
                "ledger_hash": self.ledger_hash,
                "order_rowid": self.order_rowid,
                "order_updated_at": self.order_updated_at,
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> IntegrityMark | None:
        try:
            d = json.loads(text or "")
            return cls(
                int(d["ledger_seq"]),
                str(d["ledger_hash"]),
                int(d["order_rowid"]),
                float(d["order_updated_at"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True, slots=True)
class IntegrityResult:
    problems: list[str]
    mark: IntegrityMark


#: Technician test vends use tx = TEST_TX_BASE | n. Order txs are make_tx(seq, line, attempt) =
#: seq << 8 | ...; they stay below TEST_TX_BASE because order seqs are capped at ORDER_SEQ_LIMIT.
TEST_TX_BASE = 0xFF000000
ORDER_SEQ_LIMIT = (TEST_TX_BASE >> 8) - 1  # 0xFEFFFF: the top 65,536 seqs are never orders
