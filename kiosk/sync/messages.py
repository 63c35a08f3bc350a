"""Builders for the bodies the kiosk sends that do not come from the sales core.

Pure: every time and counter comes in as an argument. The bodies are plain dicts; pass them to
`topics.encode` (status, order-status request) or `Outbox.append` (reported state, telemetry,
alarms), which wrap them with the schema version and the record header.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "alarm",
    "birth",
    "image_request",
    "order_status_request",
    "reported_state",
    "telemetry",
    "will",
]


def birth(
    kiosk_id: str,
    boot: int,
    kiosk_time: float,
    software_version: str,
    clock_offset: float | None = None,
    last_seq: int = 0,
) -> dict[str, Any]:
    """Retained on `status` right after connect: the kiosk is online, boot number `boot`.

    The province compares `boot` with the last one it saw (a restart) and `last_seq` with the
    last record it has (what is still in flight), like a Sparkplug NBIRTH.
    """
    return {
        "kiosk_id": kiosk_id,
        "state": "online",
        "boot": boot,
        "kiosk_time": kiosk_time,
        "clock_offset": clock_offset,
        "software": software_version,
        "last_seq": last_seq,
    }


def will(kiosk_id: str, boot: int, kiosk_time: float) -> dict[str, Any]:
    """The last will (retained on `status`), set at connect time: published by the broker when
    the kiosk disappears without a clean disconnect. `boot` tells which session died."""
    return {"kiosk_id": kiosk_id, "state": "offline", "boot": boot, "kiosk_time": kiosk_time}


def reported_state(
    *,
    applied_versions: Mapping[str, int],
    stock: Mapping[int, int],
    software_version: str,
    link: Mapping[str, int] | None = None,
    outbox_depth: Mapping[str, int] | None = None,
    outbox_dropped: Mapping[str, int] | None = None,
    selling: bool = True,
    out_of_service_reason: str = "",
) -> dict[str, Any]:
    """Body of a `reported` record (NORMAL priority): what this kiosk actually runs now."""
    return {
        "applied": dict(sorted(applied_versions.items())),
        "stock": {str(slot): level for slot, level in sorted(stock.items())},
        "software": software_version,
        "link": dict(link or {}),
        "outbox_depth": dict(outbox_depth or {}),
        "outbox_dropped": dict(outbox_dropped or {}),
        "selling": selling,
        "out_of_service_reason": out_of_service_reason,
    }


def telemetry(metrics: Mapping[str, float | int | str | bool | None]) -> dict[str, Any]:
    """Body of a `telemetry` record (LOW, coalesced): a flat map of metric -> value."""
    return {"metrics": dict(metrics)}


def alarm(code: str, detail: str = "", severity: str = "warning", **context: Any) -> dict[str, Any]:
    """Body of an `alarm` event (HIGH)."""
    return {"code": code, "severity": severity, "detail": detail, "context": context}


def order_status_request(
    kiosk_id: str, order_id: str, request_id: str, asked_at: float
) -> dict[str, Any]:
    return {
        "kiosk_id": kiosk_id,
        "order_id": order_id,
        "request_id": request_id,
        "asked_at": asked_at,
    }


def image_request(kiosk_id: str, sha256: str) -> dict[str, Any]:
    return {"kiosk_id": kiosk_id, "sha256": sha256}
