"""The province simulator's report views over the events it stored: stock per slot and order
histories, as docs/province-guide.md tells a province to build them.

Owns: reading `events/stock`, `events/order` and `reported` records of one kiosk out of the
simulator's `events` table (kiosk.sim.province) into views. Pure reads over a connection the
caller holds (the simulator holds its database lock around each call); stores nothing.

Stock: a slot's current level is the `level` of its newest `events/stock` record (newest by the
record's `seq`: the kiosk copies stock log rows in order, so seq order is change order, across
store epochs too). A slot with no stock record yet takes its level from the newest `reported`
record; a slot missing from the newest `reported` whose newest stock record is older than it
has left the planogram and is dropped. Orders: one entry per order id, its states in the order
they were recorded.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OrderHistory", "SlotStock", "order_histories", "stock_levels"]


@dataclass(frozen=True, slots=True)
class SlotStock:
    slot_no: int
    level: int
    product_id: str  # "" when only `reported` told the level, or the slot has no product
    source: str  # "stock" (an events/stock record) or "reported"
    last_reason: str = ""  # reason of the newest stock record ("" from reported)
    last_ref: str = ""


@dataclass
class OrderHistory:
    order_id: str
    states: list[str] = field(default_factory=list)  # paid, cancelled, ... in seq order
    reasons: dict[str, str] = field(default_factory=dict)  # state -> reason
    total_fen: int = 0
    paid_fen: int = 0
    at: dict[str, float] = field(default_factory=dict)  # state -> kiosk time

    @property
    def state(self) -> str:
        """The latest state recorded ("" if none)."""
        return self.states[-1] if self.states else ""


def _bodies(conn: sqlite3.Connection, kiosk_id: str, kind: str) -> list[tuple[int, dict[str, Any]]]:
    """(seq, body) of one kiosk's records of one kind, by seq."""
    rows = conn.execute(
        "SELECT seq, body FROM events WHERE kiosk_id = ? AND kind = ? ORDER BY seq, id",
        (kiosk_id, kind),
    ).fetchall()
    out: list[tuple[int, dict[str, Any]]] = []
    for seq, text in rows:
        body = json.loads(text)
        if isinstance(body, dict):
            out.append((int(seq), body))
    return out


def stock_levels(conn: sqlite3.Connection, kiosk_id: str) -> dict[int, SlotStock]:
    """slot_no -> its current stock as the province knows it (see the module docstring)."""
    out: dict[int, SlotStock] = {}
    seen: dict[int, int] = {}  # slot -> seq of its newest stock record
    for seq, b in _bodies(conn, kiosk_id, "stock"):
        slot = int(b["slot_no"])
        seen[slot] = seq
        out[slot] = SlotStock(
            slot,
            int(b["level"]),
            str(b.get("product_id", "")),
            "stock",
            str(b.get("reason", "")),
            str(b.get("ref", "")),
        )
    reported = _bodies(conn, kiosk_id, "reported")
    if reported:
        report_seq, report = reported[-1]
        levels = {int(s): int(v) for s, v in dict(report.get("stock") or {}).items()}
        for slot, level in levels.items():
            if slot not in out:
                out[slot] = SlotStock(slot, level, "", "reported")
        for slot in [s for s in out if s not in levels and seen.get(s, 0) < report_seq]:
            del out[slot]  # left the planogram
    return dict(sorted(out.items()))


def order_histories(conn: sqlite3.Connection, kiosk_id: str) -> dict[str, OrderHistory]:
    """order_id -> what the kiosk reported of it on `events/order`, in recording order."""
    out: dict[str, OrderHistory] = {}
    for _seq, b in _bodies(conn, kiosk_id, "order"):
        oid = str(b["order_id"])
        h = out.setdefault(oid, OrderHistory(oid))
        state = str(b["state"])
        if state not in h.states:
            h.states.append(state)
        h.reasons[state] = str(b.get("reason", ""))
        h.at[state] = float(b.get("at", 0.0))
        h.total_fen = int(b.get("total_fen", 0))
        h.paid_fen = max(h.paid_fen, int(b.get("paid_fen", 0)))
    return out
