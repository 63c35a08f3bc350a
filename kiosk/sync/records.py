"""Bodies and event ids of the records about alarms, stock changes, order states and self tests.

Owns: the one alarm shape as the controller fills it (code, severity, detail, context, built by
`messages.alarm`) and the severity of every controller alarm code; the bodies of
`events/stock`, `events/order` and `events/selftest` and their event ids (docs/sync.md lists
every id pattern); `append_selftest`, the one way a self test result enters a store's outbox
(its number from the store counter `selftest_seq`, in the same transaction).
Pure except `append_selftest` (a write through the outbox). Never decides what happened: the
sale core, the store's stock log and the self-test runners do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from kiosk.store import Store
from kiosk.sync import messages
from kiosk.sync.outbox import Priority

__all__ = [
    "CRITICAL_ALARMS",
    "ORDER_STATES",
    "SELFTEST_SOURCES",
    "RecordSink",
    "alarm_severity",
    "append_selftest",
    "board_slot_results",
    "controller_alarm",
    "order_body",
    "order_event_id",
    "selftest_body",
    "selftest_event_id",
    "slot_result",
    "slot_test_ok",
    "stock_body",
    "stock_event_id",
]

# Money or goods at risk, or the kiosk cannot sell: "critical"; every other code: "warning".
CRITICAL_ALARMS = frozenset(
    {
        "UNKNOWN_OUTCOME",
        "DOUBLE_PAYMENT",
        "BOARD_OFFLINE",
        "TX_CONFLICT",
        "LATE_OUTCOME",
        "DISK_FULL",  # kiosk.degraded: the store cannot be opened, the kiosk cannot sell
    }
)
ORDER_STATES = ("paid", "cancelled", "refund_due", "partly_delivered", "completed")
SELFTEST_SOURCES = ("service_menu", "cli", "provisioning")
SELFTEST_COUNTER = "selftest_seq"


def alarm_severity(code: str) -> str:
    """The severity of an alarm code: "critical" for UNKNOWN_OUTCOME, DOUBLE_PAYMENT,
    BOARD_OFFLINE, TX_CONFLICT, LATE_OUTCOME, DISK_FULL and every STORE_* code; "warning" for
    the rest."""
    return "critical" if code in CRITICAL_ALARMS or code.startswith("STORE_") else "warning"


def controller_alarm(kind: str, order_id: str, slot_no: int | None, detail: str) -> dict[str, Any]:
    """A controller alarm (kiosk.core.sale.AlarmKind value, or tx_collision, store_damaged)
    in the one alarm shape: the kind upper-cased is the code."""
    code = kind.upper()
    return messages.alarm(code, detail, alarm_severity(code), order_id=order_id, slot_no=slot_no)


# --- events/stock ---------------------------------------------------------------------------


def stock_event_id(kiosk_id: str, epoch: str, log_id: int) -> str:
    """`stock-<kiosk>-<store epoch>-<stock_log id>` (without the epoch on a store that has none)."""
    return f"stock-{kiosk_id}-{epoch}-{log_id}" if epoch else f"stock-{kiosk_id}-{log_id}"


def stock_body(
    *,
    slot_no: int,
    product_id: str,
    delta: int,
    level: int,
    reason: str,
    ref: str,
    at: float,
) -> dict[str, Any]:
    """One change of one slot's count (one stock_log row)."""
    return {
        "slot_no": slot_no,
        "product_id": product_id,
        "delta": delta,
        "level": level,
        "reason": reason,
        "ref": ref,
        "at": at,
    }


# --- events/order ---------------------------------------------------------------------------


def order_event_id(order_id: str, state: str) -> str:
    """`order-<order id>-<state>`: one record per order and state."""
    return f"order-{order_id}-{state}"


def order_body(
    *, order_id: str, state: str, reason: str, total_fen: int, paid_fen: int, at: float
) -> dict[str, Any]:
    if state not in ORDER_STATES:
        raise ValueError(f"order state {state!r} is not one of {', '.join(ORDER_STATES)}")
    return {
        "order_id": order_id,
        "state": state,
        "reason": reason,
        "total_fen": total_fen,
        "paid_fen": paid_fen,
        "at": at,
    }


# --- events/selftest ------------------------------------------------------------------------

# Board outcome names (kiosk.hardware.protocol.Outcome) -> the result code of a failed slot.
_RESULT_OF = {
    "NOTHING_DROPPED": "no_drop",
    "JAMMED": "jammed",
    "MOTOR_MISSING": "motor_missing",
}


# A slot test passed: the item dropped, or (a locker) the lock released.
_TEST_OK = frozenset({"DELIVERED", "DOOR_OPENED_AND_CLOSED", "DOOR_NOT_OPENED"})


def slot_test_ok(outcome: str) -> bool:
    """Did a slot test with this board outcome name pass?"""
    return outcome in _TEST_OK


def slot_result(outcome: str, ok: bool) -> str:
    """A slot test's result: "ok", or the failure code from the board's outcome name: jammed,
    no_drop, motor_missing, board_offline (no answer), else the outcome name in lower case."""
    if ok:
        return "ok"
    if outcome in ("ERROR", "OFFLINE", "BOARD_OFFLINE", "NO_ANSWER") or outcome.startswith("error"):
        return "board_offline"
    return _RESULT_OF.get(outcome, outcome.lower())


def board_slot_results(
    board: int, results: Iterable[Mapping[str, Any]], slot_map: Mapping[tuple[int, int], int]
) -> list[dict[str, Any]]:
    """A board's slot test results ({slot, outcome, ok[, description, slot_no, board, address,
    mode]} each, as `kiosk board selftest --json` prints them) as self test slots: the
    result's own `slot_no` when the tool named it (with its `address`), else the planogram's
    slot number where `slot_map` ((board, address) -> slot_no) has that slot, else the board's
    own number, and the detail says so; a slot checked without running says so too."""
    out: list[dict[str, Any]] = []
    for r in results:
        if r.get("slot_no") is not None and "address" in r:  # numbered by the tool already
            out.append(_slot_row(int(r["slot_no"]), "", r))
            continue
        address = int(r.get("address", r["slot"]))
        found = slot_map.get((int(r.get("board", board)), address))
        where = "" if found is not None else f"board {board} slot {address}, not in the planogram: "
        out.append(_slot_row(found if found is not None else address, where, r))
    return out


def _slot_row(slot_no: int, where: str, r: Mapping[str, Any]) -> dict[str, Any]:
    text = str(r["outcome"]) + (f" ({r['description']})" if r.get("description") else "")
    if r.get("mode") == "check":
        text = "checked without running: " + text
    return {
        "slot_no": slot_no,
        "result": slot_result(str(r["outcome"]), bool(r["ok"])),
        "detail": where + text,
    }


def selftest_body(
    *,
    source: str,
    started_at: float,
    finished_at: float,
    slots: Iterable[Mapping[str, Any]],
    technician: str = "",
    ok: bool | None = None,
) -> dict[str, Any]:
    """`slots`: {slot_no, result, detail} each. `ok`: default every slot's result is "ok"."""
    if source not in SELFTEST_SOURCES:
        raise ValueError(f"self test source {source!r} is not one of {SELFTEST_SOURCES}")
    rows = [
        {"slot_no": int(s["slot_no"]), "result": str(s["result"]), "detail": str(s["detail"])}
        for s in slots
    ]
    all_ok = all(r["result"] == "ok" for r in rows)
    return {
        "source": source,
        "ok": all_ok if ok is None else bool(ok),
        "started_at": started_at,
        "finished_at": finished_at,
        "slots": rows,
        "technician": technician,
    }


def selftest_event_id(kiosk_id: str, epoch: str, n: int) -> str:
    """`selftest-<kiosk>-<store epoch>-<n>`, n from the store counter `selftest_seq`."""
    return f"selftest-{kiosk_id}-{epoch}-{n}" if epoch else f"selftest-{kiosk_id}-{n}"


class RecordSink(Protocol):
    """Where records go (kiosk.sync.outbox.Outbox); `conn` joins the caller's transaction."""

    def append(
        self,
        kind: str,
        body: Mapping[str, Any],
        priority: Priority,
        *,
        event_id: str | None = None,
        conn: sqlite3.Connection | None = None,
    ) -> object: ...


def append_selftest(store: Store, sink: RecordSink, kiosk_id: str, body: Mapping[str, Any]) -> str:
    """Queue a self test result (HIGH) with the next self test number of this store, in one
    transaction; returns its event id. Safe from another process while the kiosk runs (SQLite
    WAL, BEGIN IMMEDIATE): the running kiosk's sync client sends it."""
    with store.transaction() as conn:
        rows = conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, 1) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
            (SELFTEST_COUNTER,),
        ).fetchall()
        event_id = selftest_event_id(kiosk_id, store.epoch, int(rows[0][0]))
        sink.append("selftest", body, Priority.HIGH, event_id=event_id, conn=conn)
    return event_id
