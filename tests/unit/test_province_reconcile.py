"""Issue 14, requirement 7: the province matches every sale record to a provider payment
(kiosk/sim/province_reconcile.py), on a real province.db (kiosk.sim.province.open_db).

An online-method sale without a payment is an alarm at once; an offline-code sale gets the
grace time (measured from when the province received it, never from the kiosk's clock), then
is an alarm; a revoked kiosk's unpaid offline-code sale is an alarm at once; a payment of
another kiosk or another amount does not match. Alarms are raised once per order and kind.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from kiosk.clock import ManualClock
from kiosk.core.ledger import GENESIS_HASH
from kiosk.sim.province import open_db
from kiosk.sim.province_reconcile import Reconciler, raise_alarms, reconcile
from tests.support.kiosk_node import KIOSK_A, KIOSK_B, sale_body

GRACE = 600.0


def add_sale(db: object, kiosk_id: str, n: int, method: str, received_at: float) -> str:
    body = sale_body(kiosk_id, n, GENESIS_HASH, n)
    body.update(payment_method=method, provider_ref="" if method == "offline-code" else "wx1")
    db.execute(  # type: ignore[attr-defined]
        "INSERT INTO events (event_id, kiosk_id, seq, kind, priority, boot, kiosk_time, body, "
        "received_at) VALUES (?, ?, ?, 'sale', 'critical', 1, 0, ?, ?)",
        (f"sale-{body['order_id']}", kiosk_id, n, json.dumps(body), received_at),
    )
    return str(body["order_id"])


def add_payment(db: object, kiosk_id: str, order_id: str, fen: int) -> None:
    db.execute(  # type: ignore[attr-defined]
        "INSERT INTO payments (order_id, kiosk_id, amount_fen, method, provider_ref, "
        "confirmation, created_at) VALUES (?, ?, ?, 'wechat', 'wx-real', '{}', 0)",
        (order_id, kiosk_id, fen),
    )


def test_every_sale_gets_a_status(tmp_path: Path) -> None:
    db = open_db(tmp_path)
    now = 1_800_000_000.0
    paid = add_sale(db, KIOSK_A, 1, "wechat", now - 10)
    add_payment(db, KIOSK_A, paid, 1250)
    invented = add_sale(db, KIOSK_A, 2, "alipay", now - 10)  # no payment at all
    fresh = add_sale(db, KIOSK_A, 3, "offline-code", now - GRACE + 1)
    old = add_sale(db, KIOSK_A, 4, "offline-code", now - GRACE - 1)
    late_paid = add_sale(db, KIOSK_A, 5, "offline-code", now - 5 * GRACE)
    add_payment(db, KIOSK_A, late_paid, 1250)
    cheap = add_sale(db, KIOSK_A, 6, "wechat", now)
    add_payment(db, KIOSK_A, cheap, 1)  # paid, but not that much
    borrowed = add_sale(db, KIOSK_B, 7, "wechat", now)
    add_payment(db, KIOSK_A, borrowed, 1750)  # a payment for that id, but from kiosk A
    b_offline = add_sale(db, KIOSK_B, 8, "offline-code", now)

    rep = reconcile(db, now, GRACE, revoked={KIOSK_B: now - 100})
    got = {m.order_id: m.status for m in rep.matches}
    assert got == {
        paid: "matched",
        invented: "no_payment",
        fresh: "pending",
        old: "offline_unpaid",
        late_paid: "matched",
        cheap: "amount_mismatch",
        borrowed: "no_payment",
        b_offline: "revoked_unpaid",  # no grace for a revoked kiosk
    }
    assert {m.order_id for m in rep.alarms} == {invented, old, cheap, borrowed, b_offline}
    table = rep.format()
    assert "ALARM" in table and old in table and "pending 1" in table
    assert rep.to_json()["counts"]["matched"] == 2

    new = raise_alarms(db, rep)
    assert len(new) == 5
    assert raise_alarms(db, reconcile(db, now, GRACE, {KIOSK_B: 0.0})) == []  # once only
    kinds = sorted(r[0] for r in db.execute("SELECT kind FROM province_alarms"))
    assert kinds == sorted(
        [
            "sale_without_payment",
            "sale_without_payment",
            "offline_code_unpaid",
            "payment_amount_mismatch",
            "revoked_kiosk_sale",
        ]
    )
    db.close()


def test_the_sweep_raises_the_offline_alarm_when_the_grace_runs_out(tmp_path: Path) -> None:
    db = open_db(tmp_path)
    clock = ManualClock(1_800_000_000.0)
    order = add_sale(db, KIOSK_A, 1, "offline-code", clock.time())
    r = Reconciler(db, threading.Lock(), dict, clock, grace_s=GRACE, every_s=3600)
    assert r.sweep() == []  # within the grace: the provider's notice may still come
    clock.advance(GRACE)
    (alarm,) = r.sweep()
    assert alarm.order_id == order and alarm.status == "offline_unpaid"
    assert r.sweep() == []
    db.close()
