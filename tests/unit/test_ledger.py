"""Unit tests for kiosk.core.ledger: record shape, canonical JSON, the hash chain."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from kiosk.core import sale as s
from kiosk.core.ledger import (
    GENESIS_HASH,
    LedgerError,
    ProblemKind,
    SaleRecord,
    canonical_json,
    make_record,
    record_from_dict,
    record_to_dict,
    verify_chain,
)
from kiosk.core.payment import Payment, PaymentMethod, make_order_id
from kiosk.core.planogram import SlotKind

T0 = 1_790_000_000.25
KIOSK = "AH-340100-0001"


def closed_order(seq: int, jam_second: bool = False) -> s.Order:
    lines = tuple(
        s.Line(
            product_id=pid,
            name_zh=zh,
            name_en=en,
            certification_no=f"皖扶认-2020-{n:04d}",
            origin_county_zh="岳西县",
            origin_county_en="Yuexi",
            origin_area_code="340828",
            price_fen=price,
            slot_no=10 + n,
            slot_kind=SlotKind.SPIRAL,
        )
        for n, (pid, zh, en, price) in enumerate(
            [
                ("tea", "岳西翠兰", "Yuexi Cuilan tea", 4800),
                ("pear", "砀山梨膏", "pear paste", 2500),
            ]
        )
    )
    o = s.Order(make_order_id(KIOSK, seq), KIOSK, seq, lines)
    o, _ = s.step(o, s.CheckoutStarted(T0))
    pay = Payment(PaymentMethod.ALIPAY, f"ali-{seq}", o.total_fen, T0 + 20)
    o, _ = s.step(o, s.PaymentConfirmed(pay, T0 + 20))
    for n in range(2):
        tx = o.lines[n].tx
        assert tx is not None
        outcome = s.VendOutcome.JAMMED if jam_second and n == 1 else s.VendOutcome.DELIVERED
        o, _ = s.step(o, s.VendReported(tx, outcome, T0 + 30 + n))
    assert o.state in s.FINAL_STATES
    return o


def chain(n: int) -> list[SaleRecord]:
    records: list[SaleRecord] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        r = make_record(closed_order(seq, jam_second=seq % 2 == 0), seq, prev)
        records.append(r)
        prev = r.record_hash
    return records


def test_record_shape() -> None:
    r = make_record(closed_order(1, jam_second=True), 1, GENESIS_HASH)
    assert r.state == "partly_delivered"
    assert (r.paid_fen, r.delivered_fen, r.refund_due_fen) == (7300, 4800, 2500)
    assert r.refund_reason == "not_delivered"
    assert r.payment_method == "alipay" and r.provider_ref == "ali-1"
    assert r.lines[0].certification_no == "皖扶认-2020-0000"
    assert r.lines[0].origin_area_code == "340828"
    assert r.lines[1].status == "failed" and r.lines[1].outcome == "JAMMED"
    assert r.created_at_ms == 1_790_000_000_250
    assert len(r.record_hash) == 64


def test_canonical_json_is_sorted_compact_utf8_without_floats() -> None:
    assert canonical_json({"b": 1, "a": "梨"}) == '{"a":"梨","b":1}'.encode()
    with pytest.raises(LedgerError, match="float"):
        canonical_json({"price": 12.8})
    d = record_to_dict(make_record(closed_order(1), 1, GENESIS_HASH))
    text = json.dumps(d)
    assert "." not in "".join(str(v) for k, v in d.items() if k.endswith("_fen"))
    assert json.loads(text) == d


def test_unpaid_order_has_no_record() -> None:
    o = s.Order(make_order_id(KIOSK, 1), KIOSK, 1, closed_order(1).lines[:1])
    o, _ = s.step(o, s.ShopperCancel(T0))
    with pytest.raises(LedgerError):
        make_record(o, 1, GENESIS_HASH)


def test_intact_chain_and_roundtrip() -> None:
    records = chain(5)
    assert verify_chain(records) == []
    again = [record_from_dict(json.loads(json.dumps(record_to_dict(r)))) for r in records]
    assert again == records
    assert verify_chain(again) == []


def kinds(records: list[SaleRecord], **kw: object) -> set[ProblemKind]:
    return {p.kind for p in verify_chain(records, **kw)}  # type: ignore[arg-type]


def test_removed_record_is_detected() -> None:
    records = chain(5)
    del records[2]
    problems = verify_chain(records)
    assert {p.kind for p in problems} == {ProblemKind.MISSING_SEQUENCE, ProblemKind.BROKEN_LINK}
    assert problems[0].seq == 4 and problems[0].detail == "3"


def test_removed_first_and_last_record() -> None:
    records = chain(4)
    assert ProblemKind.MISSING_SEQUENCE in kinds(records[1:])
    # the tail cannot be proven missing from the records alone: the store compares the last
    # seq with the province's acknowledged seq
    assert kinds(records[:-1]) == set()


def test_reordered_records_are_detected() -> None:
    records = chain(5)
    records[1], records[2] = records[2], records[1]
    assert {
        ProblemKind.MISSING_SEQUENCE,
        ProblemKind.OUT_OF_ORDER,
        ProblemKind.BROKEN_LINK,
    } <= kinds(records)


def test_altered_record_is_detected() -> None:
    records = chain(3)
    records[1] = replace(records[1], refund_due_fen=0, delivered_fen=7300)
    problems = verify_chain(records)
    assert [(p.index, p.kind) for p in problems] == [(1, ProblemKind.ALTERED)]


def test_altered_record_with_recomputed_hash_breaks_the_next_link() -> None:
    records = chain(3)
    forged = make_record(closed_order(2), 2, records[0].record_hash)  # everything delivered
    records[1] = forged
    assert [(p.index, p.kind) for p in verify_chain(records)] == [(2, ProblemKind.BROKEN_LINK)]


def test_duplicated_record_is_detected() -> None:
    records = chain(3)
    records.insert(2, records[1])
    assert ProblemKind.OUT_OF_ORDER in kinds(records)


def test_slice_of_a_chain() -> None:
    records = chain(5)
    assert verify_chain(records[2:], first_prev_hash=records[1].record_hash, first_seq=3) == []
    assert ProblemKind.BROKEN_LINK in kinds(records[2:], first_seq=None)


def test_record_from_dict_rejects_garbage() -> None:
    with pytest.raises(LedgerError):
        record_from_dict({"schema": 1})
    with pytest.raises(LedgerError):
        record_from_dict({"schema": 99})
