"""Sale records and their hash chain: what the province counts towards the programme's target.

Owns: the shape of an immutable sale record, its canonical JSON, `record_hash`, and the chain
check. Pure: the store supplies the next kiosk sequence number and the previous hash; nothing
here reads or writes disk. Never puts a float in a record: money is int fen, times are int
milliseconds, so the canonical bytes are the same on every machine.

record_hash = sha256(prev_hash_hex + canonical_json(body)), body = every field but record_hash
and prev_hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from kiosk.core.sale import FINAL_STATES, Order

__all__ = [
    "GENESIS_HASH",
    "ChainProblem",
    "LedgerError",
    "ProblemKind",
    "RecordLine",
    "SaleRecord",
    "canonical_json",
    "make_record",
    "record_from_dict",
    "record_hash",
    "record_to_dict",
    "verify_chain",
]

GENESIS_HASH = "0" * 64
SCHEMA = 1


class LedgerError(ValueError):
    """A record cannot be built or parsed."""


@dataclass(frozen=True, slots=True)
class RecordLine:
    product_id: str
    name_zh: str
    name_en: str
    certification_no: str
    origin_county_zh: str
    origin_area_code: str
    price_fen: int
    slot_no: int
    status: str  # delivered / failed / unknown
    tx: int  # last tx (0 = never vended)
    outcome: str  # last board outcome ("" = none)


@dataclass(frozen=True, slots=True)
class SaleRecord:
    seq: int  # kiosk ledger sequence, 1, 2, 3, ... without gaps
    kiosk_id: str
    order_id: str
    state: str
    lines: tuple[RecordLine, ...]
    payment_method: str
    provider_ref: str
    paid_fen: int
    delivered_fen: int
    refund_due_fen: int
    refund_reason: str
    created_at_ms: int
    paid_at_ms: int
    finished_at_ms: int
    prev_hash: str
    record_hash: str


def _ms(t: float | None) -> int:
    return 0 if t is None else round(t * 1000)


def _no_floats(value: object, path: str = "$") -> None:
    if isinstance(value, float):
        raise LedgerError(f"float at {path}: money is int fen and times are int ms")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _no_floats(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for n, v in enumerate(value):
            _no_floats(v, f"{path}[{n}]")


def canonical_json(body: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (Chinese kept as is), floats refused."""
    _no_floats(body)
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _body(r: SaleRecord) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "seq": r.seq,
        "kiosk_id": r.kiosk_id,
        "order_id": r.order_id,
        "state": r.state,
        "lines": [
            {
                "product_id": ln.product_id,
                "name_zh": ln.name_zh,
                "name_en": ln.name_en,
                "certification_no": ln.certification_no,
                "origin_county_zh": ln.origin_county_zh,
                "origin_area_code": ln.origin_area_code,
                "price_fen": ln.price_fen,
                "slot_no": ln.slot_no,
                "status": ln.status,
                "tx": ln.tx,
                "outcome": ln.outcome,
            }
            for ln in r.lines
        ],
        "payment_method": r.payment_method,
        "provider_ref": r.provider_ref,
        "paid_fen": r.paid_fen,
        "delivered_fen": r.delivered_fen,
        "refund_due_fen": r.refund_due_fen,
        "refund_reason": r.refund_reason,
        "created_at_ms": r.created_at_ms,
        "paid_at_ms": r.paid_at_ms,
        "finished_at_ms": r.finished_at_ms,
    }


def record_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(body)).hexdigest()


def make_record(order: Order, seq: int, prev_hash: str) -> SaleRecord:
    """The ledger record of a closed, paid order (RecordSale action)."""
    if order.state not in FINAL_STATES or order.payment is None:
        raise LedgerError(f"order {order.order_id} is not a closed, paid order")
    if order.payment.amount_fen != order.delivered_fen + order.refund_due_fen:
        raise LedgerError(f"order {order.order_id}: paid != delivered + refund due")
    lines = tuple(
        RecordLine(
            product_id=ln.product_id,
            name_zh=ln.name_zh,
            name_en=ln.name_en,
            certification_no=ln.certification_no,
            origin_county_zh=ln.origin_county_zh,
            origin_area_code=ln.origin_area_code,
            price_fen=ln.price_fen,
            slot_no=ln.slot_no,
            status=ln.status.value,
            tx=ln.tx or 0,
            outcome=ln.outcome.value if ln.outcome is not None else "",
        )
        for ln in order.lines
    )
    draft = SaleRecord(
        seq=seq,
        kiosk_id=order.kiosk_id,
        order_id=order.order_id,
        state=order.state.value,
        lines=lines,
        payment_method=order.payment.method.value,
        provider_ref=order.payment.provider_ref,
        paid_fen=order.payment.amount_fen,
        delivered_fen=order.delivered_fen,
        refund_due_fen=order.refund_due_fen,
        refund_reason=order.refund_reason.value if order.refund_reason else "",
        created_at_ms=_ms(order.created_at),
        paid_at_ms=_ms(order.payment.confirmed_at),
        finished_at_ms=_ms(order.finished_at),
        prev_hash=prev_hash,
        record_hash="",
    )
    return _with_hash(draft)


def _with_hash(r: SaleRecord) -> SaleRecord:
    return replace(r, record_hash=record_hash(r.prev_hash, _body(r)))


def record_to_dict(r: SaleRecord) -> dict[str, Any]:
    """Wire / storage form: the body plus prev_hash and record_hash."""
    d = _body(r)
    d["prev_hash"] = r.prev_hash
    d["record_hash"] = r.record_hash
    return d


def record_from_dict(d: Mapping[str, Any]) -> SaleRecord:
    """Parse the stored form (hash not checked here: that is `verify_chain`'s job)."""
    try:
        if d["schema"] != SCHEMA:
            raise LedgerError(f"unknown record schema {d['schema']!r}")
        lines = tuple(RecordLine(**ln) for ln in d["lines"])
        # head_sig: the device key's signature of the head, carried beside the record on the
        # wire (kiosk.sync.ledger_head), not part of it or of its hash
        fields = {k: v for k, v in d.items() if k not in ("schema", "lines", "head_sig")}
        return SaleRecord(lines=lines, **fields)
    except (KeyError, TypeError) as e:
        raise LedgerError(f"not a sale record: {e}") from e


class ProblemKind(StrEnum):
    MISSING_SEQUENCE = "missing_sequence"  # seq jumps: records removed
    OUT_OF_ORDER = "out_of_order"  # seq goes back or repeats: reordered / duplicated
    ALTERED = "altered"  # record_hash does not match the record's content
    BROKEN_LINK = "broken_link"  # prev_hash is not the previous record's hash


@dataclass(frozen=True, slots=True)
class ChainProblem:
    index: int  # position in the list given to verify_chain
    seq: int
    kind: ProblemKind
    detail: str


def verify_chain(
    records: Sequence[SaleRecord],
    *,
    first_prev_hash: str = GENESIS_HASH,
    first_seq: int | None = 1,
) -> list[ChainProblem]:
    """Every problem in `records`, in order; [] when the chain is intact.

    `first_prev_hash` / `first_seq` describe where the slice starts (genesis by default); pass
    `first_seq=None` to accept any starting sequence number.
    """
    problems: list[ChainProblem] = []
    prev = first_prev_hash
    expected = first_seq if first_seq is not None else (records[0].seq if records else 1)
    for n, r in enumerate(records):
        if r.seq > expected:
            missing = f"{expected}" if r.seq == expected + 1 else f"{expected}..{r.seq - 1}"
            problems.append(ChainProblem(n, r.seq, ProblemKind.MISSING_SEQUENCE, missing))
        elif r.seq < expected:
            problems.append(
                ChainProblem(n, r.seq, ProblemKind.OUT_OF_ORDER, f"expected seq {expected}")
            )
        try:
            good = record_hash(r.prev_hash, _body(r))
        except (LedgerError, TypeError, ValueError, UnicodeEncodeError) as e:
            good = f"unhashable: {e}"
        if good != r.record_hash:
            problems.append(ChainProblem(n, r.seq, ProblemKind.ALTERED, "content changed"))
        if r.prev_hash != prev:
            problems.append(
                ChainProblem(n, r.seq, ProblemKind.BROKEN_LINK, "prev_hash does not match")
            )
        prev = r.record_hash
        expected = max(expected, r.seq + 1)
    return problems
