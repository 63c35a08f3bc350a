"""The province simulator's signed acks and its per-kiosk ownership check (issue 14, req. 1, 3).

Owns: turning "these records of kiosk K are on disk" into signed ack messages (one Ed25519
signature per batch of at most `ACK_BATCH` (event id, seq) pairs, kiosk.sync.acks), and the rule
that a record carrying an order id of another kiosk is refused: not stored, not acked, and a
`foreign_order_id` province alarm. `kiosk/sim/province.py` calls these from its worker thread.

Why the order id check: records are keyed by (kiosk id from the authenticated topic, event id),
so kiosk A cannot make B's records look like duplicates; but a sale, refund or order record is
about an order, and an order id names its kiosk (`<kiosk id>-<EPOCH4><SEQ5>`,
kiosk.core.payment.make_order_id). A record on A's topic about B's order is forged or a bug,
and storing it would put a sale in the province's books that B never made.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from kiosk.core.payment import parse_order_id
from kiosk.log import log_event
from kiosk.sync.acks import sign_ack
from kiosk.sync.topics import Topics, encode

__all__ = ["ACK_BATCH", "FOREIGN_ORDER_ALARM", "AckSigner", "foreign_order_owner", "refuse_foreign"]

log = logging.getLogger("kiosk.sim.province")

# (event id, seq) pairs per signed ack: well inside the kiosk's 1000 and the 64 KiB message limit
ACK_BATCH = 500
FOREIGN_ORDER_ALARM = "foreign_order_id"


def foreign_order_owner(kiosk_id: str, body: Mapping[str, Any]) -> str | None:
    """The kiosk an outbox record's order id belongs to when that is not `kiosk_id` (the kiosk
    of the topic); None when the record has no order id, or one of `kiosk_id`, or one that is
    not an order id at all (nobody else's)."""
    inner = body.get("body")
    order_id = inner.get("order_id") if isinstance(inner, dict) else None
    if not isinstance(order_id, str) or not order_id:
        return None
    try:
        owner, _seq = parse_order_id(order_id)
    except ValueError:
        return None
    return owner if owner != kiosk_id else None


def refuse_foreign(
    db: sqlite3.Connection, kiosk_id: str, body: Mapping[str, Any], received_at: float
) -> bool:
    """Inside the store transaction: True (and a rejected receipt written, and a province alarm
    unless one was raised for this record already) when the record names another kiosk's
    order; the caller then neither stores nor acks it."""
    owner = foreign_order_owner(kiosk_id, body)
    if owner is None:
        return False
    inner = body.get("body")
    order_id = inner.get("order_id") if isinstance(inner, dict) else None
    detail = (
        f"{body.get('kind')} record {body.get('event_id')} on {kiosk_id}'s topic carries order "
        f"{order_id} of kiosk {owner}: refused, not stored, not acknowledged"
    )
    seen = db.execute(
        "SELECT 1 FROM province_alarms WHERE kiosk_id = ? AND kind = ? AND detail = ?",
        (kiosk_id, FOREIGN_ORDER_ALARM, detail),
    ).fetchone()
    if seen is None:  # the kiosk sends the refused record again and again: one alarm for it
        db.execute(
            "INSERT INTO province_alarms (kiosk_id, kind, detail, body, at) VALUES (?,?,?,?,?)",
            (
                kiosk_id,
                FOREIGN_ORDER_ALARM,
                detail,
                json.dumps(dict(body), ensure_ascii=False, sort_keys=True),
                received_at,
            ),
        )
    db.execute(
        "INSERT INTO receipts (kiosk_id, rejected) VALUES (?, 1) ON CONFLICT (kiosk_id) "
        "DO UPDATE SET rejected = rejected + 1",
        (kiosk_id,),
    )
    log_event(log, "province.foreign_order_id", logging.ERROR, kiosk=kiosk_id, detail=detail)
    return True


class AckSigner:
    """Signed ack payloads for what the province stored: `payloads(kiosk, pairs)` yields
    (topic, payload) per batch of `batch` pairs, each batch one signature, `issued_at` = the
    province clock in whole seconds (one spelling under the signature)."""

    def __init__(
        self, signing_key: bytes, kid: str, now: Callable[[], float], *, batch: int = ACK_BATCH
    ) -> None:
        self.signing_key = signing_key
        self.kid = kid
        self.now = now  # the province clock
        self.batch = batch

    def payloads(
        self, kiosk_id: str, records: Sequence[tuple[str, int]]
    ) -> Iterator[tuple[str, bytes]]:
        topic = Topics(kiosk_id).acks
        for i in range(0, len(records), self.batch):
            env = sign_ack(
                self.signing_key,
                self.kid,
                kiosk_id,
                records[i : i + self.batch],
                int(self.now()),
            )
            yield topic, encode(env)
