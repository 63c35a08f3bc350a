"""Reconciliation at the province: every sale record is matched to a provider payment.

Owns: the match of each stored `sale` record (table `events`, kiosk id from the authenticated
topic) against the payments the province holds (table `payments`: one row per order, written
when the provider confirmed it: the pay page, `ProvinceSimulator.confirm_payment`), the status
of each sale, the province alarms that follow (raised once per order and kind: table
`reconcile_alarms`, shown in `province_alarms`), the sweep thread of a running simulator
(`Reconciler`) and the report of `kiosk province-sim report --reconcile`.
Never changes a sale record or a payment; never trusts the kiosk's clock (the grace time runs
from when the province received the record).

Statuses (docs/payments.md, "Reconciliation"):
- `matched`: a payment for that order, from that kiosk, for exactly `paid_fen`.
- `pending`: an offline-code sale without a payment yet, received less than `grace_s` ago (the
  shopper paid on the pay page; the provider's notice may come later than the record).
- `offline_unpaid` (alarm): an offline-code sale still without a payment after `grace_s`.
- `revoked_unpaid` (alarm, no grace): an offline-code sale without a payment from a revoked
  kiosk: its secret is dead, so the code was made by whoever holds the stolen secret.
- `no_payment` (alarm, no grace): a sale paid by WeChat / Alipay / UnionPay with no payment at
  the province: a kiosk accepts those only on the province's signed confirmation, which is
  stored before it is sent, so this sale was invented or edited.
- `amount_mismatch` (alarm): a payment exists but for another amount.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from kiosk.clock import Clock
from kiosk.core.payment import PaymentMethod
from kiosk.log import log_event

__all__ = [
    "ALARM_KINDS",
    "DEFAULT_GRACE_S",
    "ReconcileReport",
    "Reconciler",
    "SaleMatch",
    "raise_alarms",
    "reconcile",
]

log = logging.getLogger("kiosk.sim.province_reconcile")

DEFAULT_GRACE_S = 24 * 3600.0
# status -> the province alarm kind it raises (statuses not listed raise none)
ALARM_KINDS = {
    "offline_unpaid": "offline_code_unpaid",
    "revoked_unpaid": "revoked_kiosk_sale",
    "no_payment": "sale_without_payment",
    "amount_mismatch": "payment_amount_mismatch",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reconcile_alarms (
    kiosk_id    TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    at          REAL NOT NULL,
    PRIMARY KEY (kiosk_id, order_id, kind)
);
"""


@dataclass(frozen=True)
class SaleMatch:
    kiosk_id: str
    order_id: str
    method: str
    paid_fen: int
    received_at: float
    status: str
    provider_ref: str = ""  # the payment's, when one was found
    payment_fen: int | None = None


@dataclass
class ReconcileReport:
    at: float
    grace_s: float
    matches: list[SaleMatch] = field(default_factory=list)

    @property
    def alarms(self) -> list[SaleMatch]:
        return [m for m in self.matches if m.status in ALARM_KINDS]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.matches:
            out[m.status] = out.get(m.status, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "grace_s": self.grace_s,
            "counts": self.counts(),
            "sales": [asdict(m) for m in self.matches],
            "alarms": [{**asdict(m), "kind": ALARM_KINDS[m.status]} for m in self.alarms],
        }

    def format(self) -> str:
        def yuan(fen: int | None) -> str:
            return "-" if fen is None else f"¥{fen // 100}.{fen % 100:02d}"

        out = [
            f"Reconciliation / 对账 (offline-code grace {self.grace_s:g} s): "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.counts().items()))
        ]
        out.append(
            f"  {'kiosk':<20} {'order':<28} {'method':<13} {'paid':>10} {'payment':>10}  status"
        )
        for m in self.matches:
            flag = "  ALARM" if m.status in ALARM_KINDS else ""
            out.append(
                f"  {m.kiosk_id:<20} {m.order_id:<28} {m.method:<13} {yuan(m.paid_fen):>10} "
                f"{yuan(m.payment_fen):>10}  {m.status}{flag}"
            )
        return "\n".join(out)


def _status(
    method: str,
    paid_fen: int,
    payment: tuple[int, str] | None,
    age_s: float,
    grace_s: float,
    revoked: bool,
) -> str:
    if payment is not None:
        return "matched" if payment[0] == paid_fen else "amount_mismatch"
    if method != PaymentMethod.OFFLINE_CODE.value:
        return "no_payment"
    if revoked:
        return "revoked_unpaid"
    return "offline_unpaid" if age_s >= grace_s else "pending"


def reconcile(
    conn: sqlite3.Connection,
    now: float,
    grace_s: float = DEFAULT_GRACE_S,
    revoked: Mapping[str, float] | None = None,
) -> ReconcileReport:
    """Match every stored sale record to the payment of its order (same kiosk)."""
    revoked = revoked or {}
    rep = ReconcileReport(now, grace_s)
    payments = {
        (kid, oid): (int(fen), str(ref))
        for oid, kid, fen, ref in conn.execute(
            "SELECT order_id, kiosk_id, amount_fen, provider_ref FROM payments"
        )
    }
    for kid, body, received_at in conn.execute(
        "SELECT kiosk_id, body, received_at FROM events WHERE kind = 'sale' ORDER BY id"
    ):
        b = json.loads(body)
        oid, method, paid = str(b.get("order_id", "")), str(b.get("payment_method", "")), 0
        if isinstance(b.get("paid_fen"), int):
            paid = int(b["paid_fen"])
        pay = payments.get((kid, oid))
        status = _status(method, paid, pay, now - received_at, grace_s, kid in revoked)
        rep.matches.append(
            SaleMatch(
                kid,
                oid,
                method,
                paid,
                float(received_at),
                status,
                pay[1] if pay else "",
                pay[0] if pay else None,
            )
        )
    return rep


def raise_alarms(conn: sqlite3.Connection, report: ReconcileReport) -> list[SaleMatch]:
    """Record a province alarm for every alarming sale not alarmed before (same order, same
    kind); returns the new ones. One transaction."""
    conn.executescript(_SCHEMA)
    new: list[SaleMatch] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for m in report.alarms:
            kind = ALARM_KINDS[m.status]
            cur = conn.execute(
                "INSERT INTO reconcile_alarms (kiosk_id, order_id, kind, at) VALUES (?,?,?,?) "
                "ON CONFLICT DO NOTHING",
                (m.kiosk_id, m.order_id, kind, report.at),
            )
            if cur.rowcount != 1:
                continue
            detail = f"order {m.order_id}: {m.method} sale of {m.paid_fen} fen, {m.status}"
            conn.execute(
                "INSERT INTO province_alarms (kiosk_id, kind, detail, body, at) VALUES (?,?,?,?,?)",
                (m.kiosk_id, kind, detail, json.dumps(asdict(m), sort_keys=True), report.at),
            )
            new.append(m)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    for m in new:
        log_event(
            log,
            "province.reconcile_alarm",
            logging.ERROR,
            kiosk=m.kiosk_id,
            order=m.order_id,
            kind=ALARM_KINDS[m.status],
        )
    return new


class Reconciler:
    """A running simulator's sweep: every `every_s`, reconcile and raise new alarms."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        lock: threading.Lock,
        revoked: Callable[[], Mapping[str, float]],
        clock: Clock,
        *,
        grace_s: float = DEFAULT_GRACE_S,
        every_s: float = 60.0,
    ) -> None:
        self.conn, self.lock, self.revoked, self.clock = conn, lock, revoked, clock
        self.grace_s, self.every_s = grace_s, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self) -> list[SaleMatch]:
        revoked = self.revoked()
        with self.lock:
            report = reconcile(self.conn, self.clock.time(), self.grace_s, revoked)
            return raise_alarms(self.conn, report)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.sweep()
            except Exception:
                log.exception("province: reconciliation sweep failed (next one retries)")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="province-reconcile", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
