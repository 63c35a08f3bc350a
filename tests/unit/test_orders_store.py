"""kiosk.store.orders: order JSON round trip, persistence, ledger chain, idempotent refunds."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from kiosk.core.ledger import ProblemKind
from kiosk.core.payment import Payment, PaymentMethod, make_order_id
from kiosk.core.sale import (
    CancelReason,
    LineStatus,
    Order,
    RefundReason,
    State,
    VendOutcome,
)
from kiosk.store import Store, open_store
from kiosk.store.orders import OrderRepo, order_from_dict, order_to_dict
from tests.support.store import SAMPLE_KIOSK as KIOSK
from tests.support.store import sample_line as _line
from tests.support.store import sample_order


def closed_order(seq: int, delivered: int = 3) -> Order:
    lines = tuple(
        _line(
            k,
            status=LineStatus.DELIVERED if k < delivered else LineStatus.FAILED,
            tx=seq << 8 | k << 3,
            attempts=1,
            tried_slots=(10 + k,),
            outcome=VendOutcome.DELIVERED if k < delivered else VendOutcome.JAMMED,
        )
        for k in range(3)
    )
    total = sum(ln.price_fen for ln in lines)
    delivered_fen = sum(ln.price_fen for ln in lines[:delivered])
    refund = total - delivered_fen
    return Order(
        order_id=make_order_id(KIOSK, seq),
        kiosk_id=KIOSK,
        order_seq=seq,
        lines=lines,
        state=State.COMPLETED if not refund else State.PARTLY_DELIVERED,
        created_at=1_790_000_000.0,
        expires_at=1_790_000_120.0,
        payment=Payment(PaymentMethod.WECHAT, f"wx-{seq}", total, 1_790_000_010.5),
        refund_due_fen=refund,
        refund_reason=RefundReason.NOT_DELIVERED if refund else None,
        finished_at=1_790_000_030.0,
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = open_store(tmp_path)
    yield s  # type: ignore[misc]
    s.close()


def test_round_trip_every_field() -> None:
    full = replace(
        closed_order(7, delivered=1),
        extensions=2,
        extend_offered=True,
        last_payment_query_at=1.5,
        code_tries=1,
        cancel_reason=CancelReason.TIMEOUT,
        extra_payments=(Payment(PaymentMethod.ALIPAY, "ali-2", 3006, 2.0),),
        vend_started_at=3.0,
        last_outcome_query_at=4.0,
        suspended_at=5.0,
    )
    for o in (sample_order(), full, closed_order(3)):
        d = order_to_dict(o)
        assert order_from_dict(json.loads(json.dumps(d))) == o


def test_from_dict_rejects_junk() -> None:
    with pytest.raises(ValueError):
        order_from_dict({"schema": 1})
    with pytest.raises(ValueError, match="schema"):
        order_from_dict({**order_to_dict(sample_order()), "schema": 99})


def test_save_load_unfinished_and_reservations(store: Store) -> None:
    repo = OrderRepo(store)
    o = sample_order()
    base = store.counters.current("order_seq")  # random per store (docs/sales.md)
    with store.transaction() as conn:
        assert repo.next_order_seq(conn) == base + 1
        repo.save(conn, o, 1.0)
        repo.reserve(conn, o.order_id, {11: 1, 12: 2})
    assert repo.get(o.order_id) == o
    assert repo.unfinished() == [o]
    assert repo.reserved() == {11: 1, 12: 2}
    with store.transaction() as conn:
        repo.unreserve_one(conn, o.order_id, [12])
        repo.unreserve_one(conn, o.order_id, [99, 11])
        repo.save(conn, replace(o, state=State.CANCELLED), 2.0)
    assert repo.reserved() == {12: 1}
    assert repo.unfinished() == []
    with store.transaction() as conn:
        repo.release(conn, o.order_id)
        repo.release(conn, o.order_id)
        assert repo.next_order_seq(conn) == base + 2
    assert repo.reserved() == {}


def test_ledger_append_is_chained_idempotent_and_verifiable(store: Store) -> None:
    repo = OrderRepo(store)
    with store.transaction() as conn:
        a = repo.append_ledger(conn, closed_order(1), 1.0)
        b = repo.append_ledger(conn, closed_order(2, delivered=2), 2.0)
        again = repo.append_ledger(conn, closed_order(1), 3.0)
    assert (a.seq, b.seq) == (1, 2)
    assert again == a
    assert b.prev_hash == a.record_hash
    assert b.refund_due_fen == closed_order(2, delivered=2).lines[2].price_fen
    assert repo.verify_ledger() == []
    # tamper with a record: detected
    with store.transaction() as conn:
        body = json.loads(conn.execute("SELECT body FROM ledger WHERE seq = 1").fetchone()[0])
        body["delivered_fen"] += 1
        conn.execute("UPDATE ledger SET body = ? WHERE seq = 1", (json.dumps(body),))
    kinds = [p.kind for p in repo.verify_ledger() if not isinstance(p, str)]
    assert ProblemKind.ALTERED in kinds
    # delete a record: detected
    with store.transaction() as conn:
        conn.execute("DELETE FROM ledger WHERE seq = 1")
    kinds = [p.kind for p in repo.verify_ledger() if not isinstance(p, str)]
    assert ProblemKind.MISSING_SEQUENCE in kinds


def test_refunds_are_idempotent(store: Store) -> None:
    repo = OrderRepo(store)
    oid = make_order_id(KIOSK, 1)
    with store.transaction() as conn:
        assert repo.add_refund(conn, oid, 500, RefundReason.NOT_DELIVERED, "", 1.0)
        # the offline-code payment got its provider ref later: still the same refund
        assert not repo.add_refund(conn, oid, 500, RefundReason.NOT_DELIVERED, "wx-1", 2.0)
        assert repo.add_refund(conn, oid, 900, RefundReason.DOUBLE_PAYMENT, "wx-2", 3.0)
        assert not repo.add_refund(conn, oid, 900, RefundReason.DOUBLE_PAYMENT, "wx-2", 4.0)
        assert repo.add_refund(conn, oid, 900, RefundReason.DOUBLE_PAYMENT, "wx-3", 5.0)
    assert [(r.reason, r.amount_fen) for r in repo.refunds(oid)] == [
        ("not_delivered", 500),
        ("double_payment", 900),
        ("double_payment", 900),
    ]


def test_test_vend_tx_never_collides_with_order_tx(store: Store) -> None:
    from kiosk.core.sale import MAX_ATTEMPTS, MAX_LINES, make_tx
    from kiosk.store.orders import ORDER_SEQ_LIMIT, TEST_TX_BASE

    repo = OrderRepo(store)
    base = store.counters.current("test_vend_tx")
    tx = repo.start_test_vend(12, "vend", 1.0)
    assert tx == TEST_TX_BASE | (base + 1)
    assert make_tx(ORDER_SEQ_LIMIT, MAX_LINES - 1, MAX_ATTEMPTS - 1) < TEST_TX_BASE
    with store.transaction() as conn:
        repo.finish_test_vend(conn, tx, "DELIVERED", 2.0)
    assert repo.test_vends() == [(tx, 12, "vend", "DELIVERED")]
