"""Cost of the start-up integrity check on a store with N sale records (issue: store integrity).

The kiosk checks its ledger's hash chain and every paid order's money rules before it sells
(kiosk.store.orders.OrderRepo.integrity_problems). This builds a real store (SQLite file, WAL,
synchronous=FULL) with N completed orders and their N ledger records, then times the check
(best of 3) against a same-run baseline: reading the same rows and parsing their JSON, the floor
any check that looks at every record must pay. Two figures: the check the kiosk runs before it
sells (incremental: since the mark of the last verified start, here with 100 new orders on top of
N verified ones; goal under 2 s for 100,000), and the full check (`kiosk store check`, and the
kiosk's background check after start, which reads in small chunks and never holds up a sale).

Run: .venv/bin/python bench/bench_integrity.py [--records N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_of, emit, figure, machine

from kiosk.core.ledger import GENESIS_HASH, make_record, record_to_dict
from kiosk.core.payment import Payment, PaymentMethod, make_order_id
from kiosk.core.planogram import SlotKind
from kiosk.core.sale import Line, LineStatus, Order, State, VendOutcome
from kiosk.store import Store, open_store
from kiosk.store.orders import OrderRepo, order_to_dict

KIOSK = "AH-340100-0001"


def _order(seq: int, epoch: str) -> Order:
    lines = tuple(
        Line(
            product_id=f"P{k}",
            name_zh=f"产品{k}",
            name_en=f"Product {k}",
            certification_no=f"FP-{k}",
            origin_county_zh="金寨县",
            origin_county_en="Jinzhai",
            origin_area_code="341524",
            price_fen=1000 + k,
            slot_no=10 + k,
            slot_kind=SlotKind.SPIRAL,
            status=LineStatus.DELIVERED,
            tx=seq << 8 | k << 3,
            attempts=1,
            tried_slots=(10 + k,),
            outcome=VendOutcome.DELIVERED,
        )
        for k in range(2)
    )
    total = sum(ln.price_fen for ln in lines)
    return Order(
        order_id=make_order_id(KIOSK, seq, epoch),
        kiosk_id=KIOSK,
        order_seq=seq,
        lines=lines,
        state=State.COMPLETED,
        created_at=1_790_000_000.0 + seq,
        expires_at=1_790_000_120.0 + seq,
        payment=Payment(PaymentMethod.WECHAT, f"wx-{seq}", total, 1_790_000_010.5 + seq),
        finished_at=1_790_000_030.0 + seq,
    )


def _insert(conn: Any, order: Order, seq: int, prev: str, at: float) -> str:
    """One order row and its ledger record chained to `prev`; returns the record's hash."""
    rec = make_record(order, seq, prev)
    conn.execute(
        "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)",
        (
            order.order_id,
            order.order_seq,
            order.state.value,
            json.dumps(order_to_dict(order)),
            at,
            at,
        ),
    )
    conn.execute(
        "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?)",
        (seq, order.order_id, rec.prev_hash, rec.record_hash, json.dumps(record_to_dict(rec)), at),
    )
    return rec.record_hash


def build(store: Store, n: int) -> None:
    prev = GENESIS_HASH
    for start in range(1, n + 1, 5000):
        with store.transaction() as conn:
            for seq in range(start, min(n, start + 4999) + 1):
                prev = _insert(conn, _order(seq, store.epoch), seq, prev, 1.0)


def _extend(store: Store, n0: int, head_seq: int, head_hash: str, more: int) -> None:
    """`more` orders sold after the verified mark (updated later than the first ones)."""
    prev = head_hash
    with store.transaction() as conn:
        for k in range(1, more + 1):
            prev = _insert(conn, _order(n0 + k, store.epoch), head_seq + k, prev, 2.0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--records", type=int, default=100_000)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-integrity-") as d:
        store = open_store(Path(d))
        t0 = time.perf_counter()
        build(store, a.records)
        print(f"built {a.records} orders + ledger records in {time.perf_counter() - t0:.1f} s")
        repo = OrderRepo(store)
        first = repo.check_integrity()
        assert first.problems == [], first.problems[:3]
        n0 = a.records
        # 100 more orders after the verified mark, as a kiosk that sold since its last start
        with store.read() as c:
            head = c.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        _extend(store, n0, int(head[0]), str(head[1]), 100)

        def floor() -> None:
            with store.read() as c:
                for (b,) in c.execute("SELECT body FROM ledger"):
                    json.loads(b)
                for (b,) in c.execute("SELECT body FROM orders"):
                    json.loads(b)

        incr = best_of(3, lambda: repo.check_integrity(first.mark))
        assert repo.check_integrity(first.mark).problems == []
        check = best_of(3, repo.integrity_problems)
        base = best_of(3, floor)
        store.close()
    print(f"machine: {machine()}")
    print(f"start-up check (since mark, +100 orders) : {incr:.3f} s (best of 3)")
    print(f"full check, {a.records} records         : {check:.2f} s (best of 3)")
    print(f"baseline: read + parse the same rows     : {base:.2f} s ({check / base:.1f}x)")
    emit(
        [
            figure(
                "store",
                f"start-up integrity check (since the last mark, 100 new orders on "
                f"{a.records:,} verified)",
                round(incr, 3),
                "s",
                goal="< 2 s for 100,000",
                met=incr < 2.0 if a.records >= 100_000 else None,
                baseline=round(base, 3),
                baseline_name="read + json-parse all rows",
            ),
            figure(
                "store",
                f"full integrity check (kiosk store check; background after start), "
                f"{a.records:,} orders + ledger records",
                round(check, 3),
                "s",
                baseline=round(base, 3),
                baseline_name="read + json-parse the same rows",
            ),
        ]
    )


if __name__ == "__main__":
    main()
